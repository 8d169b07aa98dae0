import type { Logger } from '../log.js';

/** After a job finishes, the state directory's size is checked this much later (finishes come in bursts). */
const CHECK_DELAY_MS = 1000;

export interface StateLimitOptions {
  maxBytes: number;
  log: Logger;
  /** The bytes a job's folder holds. */
  sizeOf(jobId: string): Promise<number>;
  /** Every job this server knows: finished ones may go, oldest first. */
  jobs(): ReadonlyArray<{ id: string; finishedAt: string | undefined }>;
  /** Removes a finished job (folder and memory). */
  remove(jobId: string): Promise<void>;
}

/**
 * Keeps the state directory within a size: once the jobs' folders together grow past `maxBytes`,
 * the oldest finished jobs are removed until it fits again (days of retention can hold a lot: one
 * task may write up to its output limit). A finished job's size is measured once (it no longer
 * changes, unless it is resumed); running jobs are measured every check and never removed.
 */
export class StateLimit {
  private readonly options: StateLimitOptions;
  private readonly sizes = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private closed = false;

  constructor(options: StateLimitOptions) {
    this.options = options;
  }

  /** A job changed (finished, resumed, removed): its size is measured again at the next check. */
  changed(jobId: string): void {
    this.sizes.delete(jobId);
    this.schedule();
  }

  /** Checks soon; several calls make one check. */
  schedule(delayMs = CHECK_DELAY_MS): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, delayMs);
    this.timer.unref();
  }

  /** Measures the jobs and removes the oldest finished ones while the total is over the limit. */
  check(): Promise<void> {
    this.checking ??= this.enforce()
      .catch((error: unknown) =>
        this.options.log.warn(`could not keep the state directory within its size limit: ${String(error)}`),
      )
      .finally(() => {
        this.checking = undefined;
      });
    return this.checking;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private async enforce(): Promise<void> {
    const jobs = this.options.jobs();
    let total = 0;
    const finished: Array<{ id: string; finishedAt: string; bytes: number }> = [];
    for (const job of jobs) {
      let bytes = job.finishedAt === undefined ? undefined : this.sizes.get(job.id);
      if (bytes === undefined) {
        bytes = await this.options.sizeOf(job.id);
        if (job.finishedAt !== undefined) this.sizes.set(job.id, bytes);
      }
      total += bytes;
      if (job.finishedAt !== undefined) finished.push({ id: job.id, finishedAt: job.finishedAt, bytes });
    }
    const known = new Set(jobs.map((job) => job.id));
    for (const id of this.sizes.keys()) if (!known.has(id)) this.sizes.delete(id);
    if (total <= this.options.maxBytes) return;
    finished.sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
    const removed: string[] = [];
    for (const job of finished) {
      if (total <= this.options.maxBytes || this.closed) break;
      await this.options.remove(job.id);
      this.sizes.delete(job.id);
      total -= job.bytes;
      removed.push(job.id);
    }
    if (removed.length > 0) {
      this.options.log.info(
        `removed ${removed.length} finished job(s), oldest first, to keep the state directory under ${this.options.maxBytes} bytes: ${removed.join(', ')}`,
      );
    }
    if (total > this.options.maxBytes)
      this.options.log.warn(
        `the state directory holds ${total} bytes, over its limit of ${this.options.maxBytes}, in jobs that are still running`,
      );
  }
}
