import type { Job } from './job.js';
import type { Pool } from './types.js';

interface Lane {
  pool: Pool;
  running: number;
  /** Jobs with queued tasks, served round-robin so a small job is not stuck behind a huge one. */
  ring: Job[];
  next: number;
}

/** Starts one task; it must add the task to `job.running` before returning. */
export type StartTask = (pool: Pool, job: Job, index: number, input: unknown) => void;

/**
 * Which task runs next. The one place where limits hold: a pool's (all its jobs together) and a
 * job's own (`meta.concurrency`). Round-robin between the jobs of a pool, FIFO within a job.
 */
export class Scheduler {
  private readonly lanes = new Map<string, Lane>();
  private readonly start: StartTask;
  private stopped = false;

  constructor(pools: readonly Pool[], start: StartTask) {
    for (const pool of pools) {
      if (!(Number.isInteger(pool.concurrency) && pool.concurrency > 0)) {
        throw new TypeError(`Expected pool ${pool.kind} concurrency to be an integer from 1 and up, got ${pool.concurrency}`);
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

  /** A task of `job` has stopped running (its result is not recorded yet): its slot goes to the next one at once. */
  finished(job: Job): void {
    const lane = this.lanes.get(job.meta.kind);
    if (!lane) return;
    lane.running--;
    this.pump(lane);
  }

  /** No task starts from now on (shutdown). */
  stop(): void {
    this.stopped = true;
  }

  private pump(lane: Lane): void {
    while (!this.stopped && lane.running < lane.pool.concurrency && lane.ring.length > 0) {
      const job = this.pick(lane);
      if (!job) break;
      const next = job.takeNext();
      if (!job.hasQueued) this.remove(job);
      if (!next) continue;
      lane.running++;
      this.start(lane.pool, job, next.index, next.input);
    }
  }

  /** The next job in the ring with a queued task and room under its own limit. */
  private pick(lane: Lane): Job | undefined {
    for (let tries = 0; tries < lane.ring.length; tries++) {
      const at = (lane.next + tries) % lane.ring.length;
      const job = lane.ring[at];
      if (job && job.hasQueued && job.running.size < job.meta.concurrency) {
        lane.next = (at + 1) % lane.ring.length;
        return job;
      }
    }
    return undefined;
  }
}
