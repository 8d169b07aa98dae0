import { MonitorError } from '../errors.js';
import { latestRecords } from '../store/records.js';
import type { EngineContext } from './context.js';
import type { Job } from './job.js';
import type { JobMeta, JobSnapshot, SubmitRequest, TaskRecord, UpstreamView } from './types.js';

/** Records a task's end (the engine's TaskRuns.persist): pipelines record the tasks they fail that way. */
export type Persist = (job: Job, record: TaskRecord) => Promise<void>;

/**
 * Pipelines: a later stage is a job whose tasks wait (held) for their upstream's results. An
 * `each` stage's task i goes once task i upstream is recorded; an `all` stage (a reduce) goes once
 * the whole upstream job has ended. A task whose upstream failed is recorded as failed, with why.
 */
export class Pipelines {
  private readonly ctx: EngineContext;
  private readonly persist: Persist;
  /** Each job's later stages (JobMeta.after points the other way). */
  private readonly dependents = new Map<string, Set<string>>();

  constructor(ctx: EngineContext, persist: Persist) {
    this.ctx = ctx;
    this.persist = persist;
  }

  /** A job comes into memory: a later stage is linked to the job it runs on. */
  link(meta: JobMeta): void {
    if (!meta.after) return;
    const feeds = this.dependents.get(meta.after.job) ?? new Set<string>();
    feeds.add(meta.id);
    this.dependents.set(meta.after.job, feeds);
  }

  /** The later stages that run on this job, among the jobs known. */
  feedsOf(jobId: string): string[] {
    return [...(this.dependents.get(jobId) ?? [])].filter((id) => this.ctx.jobs.has(id));
  }

  /** A later stage runs on a job this server runs or has finished, one task per upstream task for `each`. */
  checkUpstream(upstream: Job, after: NonNullable<SubmitRequest['after']>, taskCount: number): void {
    if (upstream.foreign) {
      throw new MonitorError(
        'JOB_OWNED_ELSEWHERE',
        `Job ${after.job} is run by another monitor-mcp process (pid ${upstream.meta.ownerPid ?? '?'}): a later stage can only follow a job this server runs.`,
        {
          hint: 'Submit the later stage from the client session that started that job, or once it has finished.',
        },
      );
    }
    if (after.mode === 'each' && taskCount !== upstream.meta.taskCount) {
      throw new MonitorError(
        'INTERNAL',
        `A stage over job ${after.job} needs ${upstream.meta.taskCount} tasks, one per upstream task; it was planned with ${taskCount}.`,
      );
    }
  }

  /**
   * A later stage with the tasks of the stages before it, done and in all: while it waits for them
   * (a reduce while its map runs) its own counts (0/1) say nothing of how far the pipeline is.
   */
  withUpstreamTasks(snapshot: JobSnapshot): JobSnapshot {
    if (!snapshot.after) return snapshot;
    const { jobs } = this.ctx;
    const seen = new Set<string>([snapshot.id]);
    const sum = { done: 0, total: 0 };
    for (
      let up = jobs.get(snapshot.after.job);
      up && !seen.has(up.id);
      up = up.meta.after && jobs.get(up.meta.after.job)
    ) {
      seen.add(up.id);
      sum.total += up.counts.total;
      sum.done += up.counts.total - up.counts.queued - up.counts.running;
    }
    if (sum.total > 0) snapshot.upstreamTasks = sum;
    return snapshot;
  }

  /** The jobs of `job`'s pipeline, first stage first (just the job when it has no stages). */
  pipelineOf(job: Job): string[] {
    const { jobs } = this.ctx;
    let root = job;
    const seen = new Set<string>([root.id]);
    for (
      let up = root.meta.after && jobs.get(root.meta.after.job);
      up && !seen.has(up.id);
      up = up.meta.after && jobs.get(up.meta.after.job)
    ) {
      seen.add(up.id);
      root = up;
    }
    const order = [root.id];
    for (let at = 0; at < order.length; at++) {
      for (const next of this.dependents.get(order[at] ?? '') ?? [])
        if (!order.includes(next) && jobs.has(next)) order.push(next);
    }
    return order;
  }

  /** A task of `upstream` is recorded: its `each` partners in later stages may go; an `all` stage goes once the job has ended. */
  async feedDependents(upstream: Job, record: TaskRecord): Promise<void> {
    for (const id of this.dependents.get(upstream.id) ?? []) {
      const job = this.ctx.jobs.get(id);
      if (!job?.owned || job.foreign || !job.meta.after) continue;
      if (job.meta.after.mode === 'all') {
        if (upstream.isSettled) await this.feedHeld(job);
      } else if (job.isHeld(record.index) && upstream.stateOf(record.index) === record.state) {
        await this.feedOne(job, upstream, record);
        this.ctx.scheduler.add(job);
      }
    }
  }

  /** Releases the held tasks of a later stage whose upstream is in (from disk: after a submit, resume or restart). */
  async feedHeld(job: Job): Promise<void> {
    const after = job.meta.after;
    if (!after || job.heldIndices().length === 0) return;
    const { store, scheduler } = this.ctx;
    const upstream = this.ctx.jobs.get(after.job);
    if (!upstream) {
      for (const index of job.heldIndices())
        await this.failHeld(job, index, {
          code: 'UPSTREAM_FAILED',
          message: `Job ${after.job}, which this stage runs on, is gone (removed after its retention time).`,
        });
      return;
    }
    if (after.mode === 'all') {
      // Interrupted upstream tasks may still run (resume): the stage waits for them.
      if (!upstream.isSettled || upstream.counts.interrupted > 0) return;
      const view: UpstreamView = {
        jobId: upstream.id,
        outputDir: store.outputDir(upstream.id),
        records: latestRecords(await store.readResults(upstream.id)),
      };
      for (const index of job.heldIndices()) job.release(index, view);
      scheduler.add(job);
      return;
    }
    const latest = await store.latestResults(upstream.id);
    for (const index of job.heldIndices()) {
      const record = latest.get(index);
      if (record && job.isHeld(index) && upstream.stateOf(index) === record.state)
        await this.feedOne(job, upstream, record);
    }
    scheduler.add(job);
  }

  /** One task of an `each` stage gets its upstream's record: it queues on a success, else it is recorded as failed (or cancelled) with why. */
  private async feedOne(job: Job, upstream: Job, record: TaskRecord): Promise<void> {
    if (record.state === 'succeeded') {
      job.release(record.index, {
        jobId: upstream.id,
        outputDir: this.ctx.store.outputDir(upstream.id),
        records: [record],
      });
      return;
    }
    const from = `task #${record.index}${record.label === undefined ? '' : ` (${record.label})`} of job ${upstream.id}`;
    const why = record.error ? `${record.error.code}: ${record.error.message}` : record.state;
    await this.failHeld(job, record.index, {
      code: record.state === 'cancelled' ? 'CANCELLED' : 'UPSTREAM_FAILED',
      message: `Its input, ${from}, ${record.state === 'cancelled' ? 'was cancelled' : 'failed'} (${why}).`,
      hint: `Fix that, then resume_job ${upstream.id} with include_failed: true: it runs the failed upstream tasks again and then this one.`,
    });
  }

  private async failHeld(job: Job, index: number, error: NonNullable<TaskRecord['error']>): Promise<void> {
    if (!job.isHeld(index)) return;
    const input = job.unhold(index);
    const record: TaskRecord = {
      index,
      state: error.code === 'CANCELLED' ? 'cancelled' : 'failed',
      attempt: job.attemptOf(index),
      finishedAt: this.ctx.now().toISOString(),
      error,
    };
    const label = this.ctx.scheduler.pool(job.meta.kind)?.label?.(input);
    if (label !== undefined) record.label = label;
    await this.persist(job, record);
  }
}
