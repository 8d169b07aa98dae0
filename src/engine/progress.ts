import { boundedProgress, LIVE_PROGRESS } from '../store/records.js';
import type { TaskProgress } from './types.js';

/** The last progress of one running task of this server. */
export interface RunningProgress extends TaskProgress {
  jobId: string;
  index: number;
  /** When it was reported (ISO). */
  updatedAt: string;
}

/**
 * The last progress each running task of this server reported (TaskContext.progress), kept in
 * memory until the task ends: what the live file publishes for people to see. Bounded as live files
 * are (LIVE_PROGRESS): the pool may report anything, as often as it likes.
 */
export class ProgressBoard {
  private readonly latest = new Map<string, RunningProgress>();
  private readonly now: () => Date;

  constructor(now: () => Date) {
    this.now = now;
  }

  /**
   * What one run of a task reports through, and what ends it. A report after the end (a pool's
   * late callback) is dropped, and an end never drops a later run's progress of the same task.
   */
  open(jobId: string, index: number): { report: (update: TaskProgress) => void; end: () => void } {
    const key = `${jobId}#${index}`;
    let ended = false;
    let mine: RunningProgress | undefined;
    return {
      report: (update) => {
        if (ended) return;
        try {
          const view = boundedProgress(update);
          if (!view) return;
          mine = { jobId, index, updatedAt: this.now().toISOString(), ...view };
          this.latest.set(key, mine);
        } catch {
          // Never thrown into the pool's loop: a progress line is worth less than the task.
        }
      },
      end: () => {
        ended = true;
        if (mine !== undefined && this.latest.get(key) === mine) this.latest.delete(key);
      },
    };
  }

  /** The running tasks' last progress, most recent first, at most LIVE_PROGRESS.tasks of them. */
  list(): RunningProgress[] {
    return [...this.latest.values()]
      .sort((a, b) => b.updatedAt.localeCompare(a.updatedAt))
      .slice(0, LIVE_PROGRESS.tasks);
  }
}
