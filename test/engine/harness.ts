import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Engine } from '../../src/engine/engine.js';
import type { JobTotals, Pool, TaskContext, TaskResult } from '../../src/engine/types.js';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { makeTempDir } from '../helpers/client.js';

/** What the engine's tests share: a pool of real sleeping tasks, and an engine on a fresh state directory. */

/** Sums the `units` each result reports, as a kind sums its own data (tokens, say). */
export const sleepTotals: JobTotals<number> = {
  add: (sum, value) => (sum ?? 0) + ((value as { units?: number }).units ?? 0),
  view: (sum) => ({ fields: { units: sum }, text: `${sum} units` }),
};

/** A real pool whose tasks sleep `input.ms` and record how many ran at once. */
export class SleepPool implements Pool {
  readonly kind = 'sleep';
  running = 0;
  peak = 0;
  started: Array<{ jobId: string; index: number }> = [];
  /** What each task of a later stage was given of its upstream, by `jobId#index`. */
  upstreams = new Map<string, TaskContext['upstream']>();
  /** Jobs the engine said had no task queued or running any more, in order, with what ran then. */
  ended: Array<{ jobId: string; running: number }> = [];
  constructor(readonly concurrency: number) {}
  jobEnded(jobId: string): void {
    this.ended.push({ jobId, running: this.running });
  }
  async run(task: TaskContext): Promise<TaskResult> {
    this.running++;
    this.peak = Math.max(this.peak, this.running);
    this.started.push({ jobId: task.jobId, index: task.index });
    if (task.upstream) this.upstreams.set(`${task.jobId}#${task.index}`, task.upstream);
    try {
      const { ms, fail } = task.input as { ms: number; fail?: boolean };
      await sleep(ms, undefined, { signal: task.signal });
      return fail
        ? { ok: false, error: { code: 'NON_ZERO_EXIT', message: 'asked to fail' } }
        : { ok: true, value: { text: `slept ${ms}`, units: 5 } };
    } finally {
      this.running--;
    }
  }
}

const dirs: string[] = [];

/** A fresh state directory, removed by cleanup(). */
export async function tempDir(): Promise<string> {
  const dir = await makeTempDir();
  dirs.push(dir);
  return dir;
}

/** Removes the state directories made since the last call (each test file's afterEach). */
export async function cleanup(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export async function setup(
  poolConcurrency = 4,
  now?: () => Date,
): Promise<{ engine: Engine; pool: SleepPool; store: JobStore; dir: string }> {
  const dir = await tempDir();
  const store = new JobStore(dir, silentLogger);
  const pool = new SleepPool(poolConcurrency);
  const engine = new Engine({
    store,
    pools: [pool],
    totals: new Map([['sleep', sleepTotals]]),
    log: silentLogger,
    retentionDays: 7,
    ...(now ? { now } : {}),
  });
  await engine.init();
  return { engine, pool, store, dir };
}

export const tasks = (n: number, ms: number, extra: Record<string, unknown> = {}): unknown[] =>
  Array.from({ length: n }, () => ({ ms, ...extra }));
