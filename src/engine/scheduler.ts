import type { Job } from './job.js';
import type { Pool, UpstreamView } from './types.js';

/** The most tasks of a job with these options one run takes together (1: one at a time, through `run`). */
export function batchLimit(pool: Pool, options: unknown): number {
  if (!pool.runBatch || !pool.batchSize) return 1;
  const size = pool.batchSize(options);
  return Number.isInteger(size) && size > 1 ? size : 1;
}

interface Lane {
  pool: Pool;
  running: number;
  /** Jobs with queued tasks, served round-robin so a small job is not stuck behind a huge one. */
  ring: Job[];
  next: number;
}

/** A queued task taken to run. */
export interface TakenTask {
  index: number;
  input: unknown;
  /** A later stage's task: what its upstream came to. */
  upstream?: UpstreamView;
}

/** Starts one run in a slot: one task, or a batch of a job's tasks (see Pool.batchSize). */
export type StartTask = (pool: Pool, job: Job, tasks: readonly TakenTask[]) => void;

/**
 * Which task runs next. The one place where limits hold: a pool's (all its jobs together) and a
 * job's own (`meta.concurrency`), both counted in slots: a task run alone, or a batch of tasks of
 * one job run together, holds one. Round-robin between the jobs of a pool, FIFO within a job.
 */
export class Scheduler {
  private readonly lanes = new Map<string, Lane>();
  private readonly start: StartTask;
  private stopped = false;

  constructor(pools: readonly Pool[], start: StartTask) {
    for (const pool of pools) {
      if (!(Number.isInteger(pool.concurrency) && pool.concurrency > 0)) {
        throw new TypeError(
          `Expected pool ${pool.kind} concurrency to be an integer from 1 and up, got ${pool.concurrency}`,
        );
      }
      this.lanes.set(pool.kind, { pool, running: 0, ring: [], next: 0 });
    }
    this.start = start;
  }

  get kinds(): string[] {
    return [...this.lanes.keys()];
  }

  pool(kind: string): Pool | undefined {
    return this.lanes.get(kind)?.pool;
  }

  /** The job has (new) queued tasks: serve it. */
  add(job: Job): void {
    const lane = this.lanes.get(job.meta.kind);
    if (!lane) return;
    if (!lane.ring.includes(job)) lane.ring.push(job);
    this.pump(lane);
  }

  /** The job's queue was emptied (cancel): stop serving it. */
  remove(job: Job): void {
    const lane = this.lanes.get(job.meta.kind);
    const at = lane?.ring.indexOf(job) ?? -1;
    if (!lane || at === -1) return;
    lane.ring.splice(at, 1);
    if (lane.next > at) lane.next--;
    if (lane.next >= lane.ring.length) lane.next = 0;
  }

  /** A run of `job` (a task, or a batch) has stopped and its tasks are counted: its slot goes to the next one at once. */
  finished(job: Job): void {
    const lane = this.lanes.get(job.meta.kind);
    if (!lane) return;
    lane.running--;
    job.slots--;
    this.pump(lane);
  }

  /** No task starts from now on (shutdown). */
  stop(): void {
    this.stopped = true;
  }

  private pump(lane: Lane): void {
    while (!this.stopped && lane.ring.length > 0) {
      const job = this.pick(lane);
      if (!job) break;
      const size = this.batchOf(lane.pool, job);
      const tasks: TakenTask[] = [];
      while (tasks.length < size) {
        const next = job.takeNext();
        if (!next) break;
        tasks.push(next);
      }
      if (!job.hasQueued) this.remove(job);
      if (tasks.length === 0) continue;
      lane.running++;
      job.slots++;
      this.start(lane.pool, job, tasks);
    }
  }

  /**
   * How many of the job's queued tasks the opening slot takes: its pool's batch size, but no more
   * than an even share of what is queued over the job's slots, so the last batches do not leave
   * one slot busy with a full batch while the others have nothing (guided self-scheduling).
   */
  private batchOf(pool: Pool, job: Job): number {
    const limit = batchLimit(pool, job.meta.options);
    if (limit === 1) return 1;
    return Math.max(1, Math.min(limit, Math.ceil(job.counts.queued / job.meta.concurrency)));
  }

  /** The next job in the ring with a queued task and room under its own limit. */
  private pick(lane: Lane): Job | undefined {
    for (let tries = 0; tries < lane.ring.length; tries++) {
      const at = (lane.next + tries) % lane.ring.length;
      const job = lane.ring[at];
      if (job && job.hasQueued && job.slots < job.meta.concurrency && lane.running < poolLimit(lane.pool, job)) {
        lane.next = (at + 1) % lane.ring.length;
        return job;
      }
    }
    return undefined;
  }
}

/** The pool's limit for this job's tasks: its own concurrency, unless it says otherwise for such a job. */
function poolLimit(pool: Pool, job: Job): number {
  const limit = pool.concurrencyFor?.(job.meta.options);
  return limit !== undefined && Number.isInteger(limit) && limit > 0 ? limit : pool.concurrency;
}
