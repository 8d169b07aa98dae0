import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool, TaskContext, TaskProgress, TaskResult } from '../../src/engine/types.js';

/**
 * A pool whose tasks report progress as an agent would after each step (`input.steps` reports,
 * each `input.update` if given), then wait until the test lets them all finish (finishAll).
 */
export class SteppingPool implements Pool {
  readonly kind: string;
  readonly concurrency: number;
  private release: () => void = () => undefined;
  private readonly released = new Promise<void>((resolve) => {
    this.release = resolve;
  });
  /** Each task's progress callback, kept so a test can call it after the task ended. */
  readonly reporters = new Map<number, (update: TaskProgress) => void>();
  /** Reports made so far, by every task. */
  reports = 0;
  constructor(concurrency: number, kind = 'steps') {
    this.concurrency = concurrency;
    this.kind = kind;
  }
  finishAll(): void {
    this.release();
  }
  async run(task: TaskContext): Promise<TaskResult> {
    const { steps, update } = task.input as { steps: number; update?: TaskProgress };
    if (task.progress) this.reporters.set(task.index, task.progress);
    for (let step = 1; step <= steps; step++) {
      task.progress?.(update ?? { summary: `step ${step} · grep /TODO/ in src`, figures: { steps: step } });
      this.reports++;
      await sleep(1);
    }
    await this.released;
    return { ok: true, value: { text: 'done' } };
  }
}
