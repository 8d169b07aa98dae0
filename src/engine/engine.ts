import { MonitorError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DamagedJob } from '../store/records.js';
import { JobStore } from '../store/store.js';
import type { EngineContext } from './context.js';
import { damagedJobError, OtherServers } from './foreign.js';
import { Job } from './job.js';
import { Pipelines } from './pipelines.js';
import type { RunningProgress } from './progress.js';
import { requeueJob, type ResumeParts } from './resume.js';
import { TaskRuns } from './runner.js';
import { Scheduler } from './scheduler.js';
import { StateLimit } from './state-limit.js';
import { type WaitSource, waitForJobs } from './wait.js';
import type {
  JobMeta,
  JobSnapshot,
  JobTotals,
  Ownership,
  Pool,
  SubmitRequest,
  TaskRecord,
  TaskState,
} from './types.js';

export interface EngineOptions {
  store: JobStore;
  pools: readonly Pool[];
  /** Each kind's running totals over its jobs' results, by kind (kinds without any are absent). */
  totals?: ReadonlyMap<string, JobTotals<unknown>>;
  log: Logger;
  retentionDays: number;
  now?: () => Date;
  /** Without it every unfinished job found on start counts as interrupted. */
  ownership?: Ownership;
  /** The most the state directory may hold; the oldest finished jobs go first (see StateLimit). */
  maxStateBytes?: number;
}

/**
 * Jobs, tasks, limits, cancellation and resume: the facade over the job state (job.ts), the
 * scheduler (scheduler.ts), task runs (runner.ts), resumes (resume.ts), pipelines (pipelines.ts)
 * and jobs other servers own (foreign.ts). Knows no worker kind and nothing of MCP: a pool is a name, a limit
 * and `run(task)`.
 *
 * Persistence order: a job's folder is whole before it is known (submit); a task's record is
 * appended before its job can count as finished; job.json records the end last.
 */
export class Engine {
  private readonly store: JobStore;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly retentionDays: number;
  private readonly jobs = new Map<string, Job>();
  private readonly scheduler: Scheduler;
  private readonly runs: TaskRuns;
  private readonly pipelines: Pipelines;
  private readonly others: OtherServers;
  private readonly parts: ResumeParts;
  private readonly stateLimit: StateLimit | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly totals: ReadonlyMap<string, JobTotals<unknown>>;
  private closing = false;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.log = options.log;
    this.now = options.now ?? (() => new Date());
    this.retentionDays = options.retentionDays;
    this.totals = options.totals ?? new Map();
    this.scheduler = new Scheduler(options.pools, (pool, job, tasks) => this.runs.start(pool, job, tasks));
    const ctx: EngineContext = {
      store: this.store,
      log: this.log,
      jobs: this.jobs,
      scheduler: this.scheduler,
      now: this.now,
      emit: () => this.emit(),
    };
    this.runs = new TaskRuns(ctx, {
      recorded: (job, record) => this.pipelines.feedDependents(job, record),
      finished: (job) => this.stateLimit?.changed(job.id),
      closing: () => this.closing,
    });
    this.pipelines = new Pipelines(ctx, (job, record) => this.runs.persist(job, record));
    this.others = new OtherServers(ctx, options.ownership, (meta) => this.newJob(meta));
    this.parts = { ctx, others: this.others, pipelines: this.pipelines };
    if (options.maxStateBytes !== undefined) {
      this.stateLimit = new StateLimit({
        maxBytes: options.maxStateBytes,
        log: options.log,
        sizeOf: (jobId) => this.store.jobBytes(jobId),
        jobs: () =>
          [...this.jobs.values()].map((job) => ({
            id: job.id,
            finishedAt: job.isDone && !job.foreign ? job.meta.finishedAt : undefined,
          })),
        remove: async (jobId) => {
          await this.store.removeJob(jobId);
          this.jobs.delete(jobId);
        },
      });
    }
  }

  get kinds(): string[] {
    return this.scheduler.kinds;
  }

  /** Loads earlier jobs: finished results stay collectable; what was queued or running is `interrupted`. */
  async init(): Promise<{ loaded: number; removed: number; interrupted: number }> {
    await this.store.init();
    for (const kind of this.scheduler.kinds) await this.scheduler.pool(kind)?.recover?.();
    this.others.startFollowing();
    const cutoff = this.now().getTime() - this.retentionDays * 86_400_000;
    let removed = 0;
    let interrupted = 0;
    const { metas, damaged } = await this.store.loadAll();
    // Each damaged job costs only itself: quarantined (unless another live server owns it), shown as damaged.
    for (const found of damaged) await this.others.quarantine(found);
    for (const meta of metas) {
      // Unfinished jobs are kept: they load as interrupted (or stay with the live server running them).
      if (meta.finishedAt !== undefined && Date.parse(meta.finishedAt) < cutoff) {
        await this.store.removeJob(meta.id);
        removed++;
        continue;
      }
      if (await this.others.adoptOrQuarantine(meta)) interrupted++;
    }
    // In the background: measuring a thousand job folders must not delay the first reply.
    this.stateLimit?.schedule(0);
    return { loaded: this.jobs.size, removed, interrupted };
  }

  /**
   * Brings in what other servers on the state directory did: the jobs they submitted or took over
   * (from the change log, so the cost does not grow with the number of old jobs), and the progress
   * of the jobs they run (all of them, or those of `jobIds`).
   */
  async refresh(jobIds?: readonly string[]): Promise<void> {
    await this.others.refresh(jobIds);
  }

  async submit(request: SubmitRequest): Promise<JobSnapshot> {
    if (!this.scheduler.pool(request.kind))
      throw new MonitorError('INTERNAL', `No pool for job kind "${request.kind}".`);
    if (this.closing) throw shuttingDown();
    if (!(Number.isInteger(request.concurrency) && request.concurrency > 0)) {
      throw new MonitorError(
        'INVALID_INPUT',
        `Expected concurrency to be an integer from 1 and up, got ${request.concurrency}.`,
      );
    }
    if (request.inputs.length === 0) throw new MonitorError('INVALID_INPUT', 'A job needs at least one task.');
    if (request.after)
      this.pipelines.checkUpstream(this.require(request.after.job), request.after, request.inputs.length);
    const meta: JobMeta = {
      id: JobStore.newJobId(),
      kind: request.kind,
      createdAt: this.now().toISOString(),
      taskCount: request.inputs.length,
      concurrency: request.concurrency,
      options: request.options,
    };
    if (request.label !== undefined) meta.label = request.label;
    if (request.after) meta.after = { ...request.after };
    this.others.stamp(meta, 1);
    await this.store.createJob(meta, request.inputs, this.others.me);
    const job = this.newJob(meta);
    job.owned = true;
    this.jobs.set(meta.id, job);
    if (meta.after) {
      request.inputs.forEach((input, index) => job.hold(index, input));
      await this.pipelines.feedHeld(job);
    } else {
      request.inputs.forEach((input, index) => job.enqueue(index, input));
      this.scheduler.add(job);
    }
    this.emit();
    return this.snapshot(job);
  }

  /** The jobs of `jobId`'s pipeline, first stage first (just the job when it has no stages). */
  pipelineOf(jobId: string): string[] {
    return this.pipelines.pipelineOf(this.require(jobId));
  }

  /**
   * Queued tasks are dropped at once; running ones are aborted and recorded as cancelled. A stage of
   * a pipeline cancels the whole pipeline, last stage first (so nothing downstream starts meanwhile).
   */
  async cancel(jobId: string): Promise<JobSnapshot> {
    const stages = this.pipelineOf(jobId);
    for (const id of stages.reverse()) if (id !== jobId) await this.cancelOne(id);
    return this.cancelOne(jobId);
  }

  /**
   * An interrupted job (its server stopped) is taken over and its interrupted tasks recorded as
   * cancelled: it shows cancelled everywhere from then on, and resume_job with include_cancelled
   * runs them again.
   */
  private async cancelOne(jobId: string): Promise<JobSnapshot> {
    const job = this.require(jobId);
    // Another server's job: as it is now (its owner may be gone, or have finished it).
    await this.others.catchUp(job);
    // A finished job keeps its state: there is nothing left to stop.
    if (!job.foreign && job.isDone && job.counts.interrupted === 0) return this.snapshot(job);
    const generation = await this.others.own(job);
    if (job.counts.interrupted > 0) {
      // Taken over: it ends again, by this cancel, under this server's generation.
      delete job.meta.finishedAt;
      this.others.stamp(job.meta, generation);
    }
    await this.runs.cancel(job);
    this.emit();
    return this.snapshot(job);
  }

  /**
   * Queues interrupted (and, if asked, failed or cancelled) tasks of a job again, in the same job.
   * A stage of a pipeline resumes the whole pipeline, first stage first; a later stage's tasks wait
   * for their upstream again.
   */
  async resume(
    jobId: string,
    include: { failed?: boolean; cancelled?: boolean } = {},
  ): Promise<{ snapshot: JobSnapshot; requeued: number }> {
    let requeued = 0;
    const rerun = new Set<string>();
    for (const id of this.pipelineOf(jobId)) {
      const job = this.require(id);
      const after = job.meta.after;
      // A reduce over results that change runs again, whatever its own state.
      const stale = after?.mode === 'all' && rerun.has(after.job);
      const count = await this.others.damagedCosts(job, () =>
        requeueJob(this.parts, job, stale ? { failed: true, cancelled: true, succeeded: true } : include),
      );
      if (count > 0) rerun.add(id);
      requeued += count;
    }
    return { snapshot: this.snapshotOf(jobId), requeued };
  }

  /** What each task of a job works on (its label, else `#index`), for a later stage to name its tasks after. */
  async labelsOf(jobId: string): Promise<string[]> {
    const job = this.require(jobId);
    const pool = this.scheduler.pool(job.meta.kind);
    const inputs = await this.others.damagedCosts(job, () => this.store.readInputs(jobId));
    return inputs.map((input, index) => pool?.label?.(input) ?? `#${index}`);
  }

  get(jobId: string): JobSnapshot | undefined {
    const job = this.jobs.get(jobId);
    return job && this.snapshot(job);
  }

  /** Throws JOB_NOT_FOUND with a hint, for tools. */
  snapshotOf(jobId: string): JobSnapshot {
    return this.snapshot(this.require(jobId));
  }

  /** The state of one task now (after a resume, a task with a record may be queued or running again). */
  taskState(jobId: string, index: number): TaskState {
    return this.require(jobId).stateOf(index);
  }

  /** The attempt a task is on: the number of its last run started. */
  taskAttempt(jobId: string, index: number): number {
    return this.require(jobId).attemptOf(index);
  }

  meta(jobId: string): JobMeta {
    return this.require(jobId).meta;
  }

  /** The jobs found damaged (quarantined, or shown so while another server owns them), by id. */
  damagedJobs(): DamagedJob[] {
    return [...this.others.damaged.values()];
  }

  list(): JobSnapshot[] {
    return [...this.jobs.values()]
      .map((job) => this.snapshot(job))
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** What this server's running tasks last said they had done (bounded), for the live file. */
  runningProgress(): RunningProgress[] {
    return this.runs.progress.list();
  }

  /**
   * Finished-task records in finish order, as far as they are on disk: all of them once the job is
   * done (isDone waits for its writes); while it runs, a record still being written comes next time.
   */
  async results(jobId: string): Promise<readonly TaskRecord[]> {
    this.require(jobId);
    return this.store.readResults(jobId);
  }

  outputDir(jobId: string): string {
    return this.store.outputDir(jobId);
  }

  /** Called on every task state change (coalescing is the listener's business). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** No task queued or running, and every record (and the job's end) on disk. */
  isDone(jobId: string): boolean {
    return this.jobs.get(jobId)?.isSettled ?? true;
  }

  /**
   * Waits until every listed job has no queued or running task, `timeoutMs` passes, or `signal`
   * aborts; then resolves (never rejects). `onUpdate` runs after each change.
   */
  waitFor(jobIds: readonly string[], timeoutMs: number, signal?: AbortSignal, onUpdate?: () => void): Promise<boolean> {
    const source: WaitSource = {
      refresh: (ids) => this.refresh(ids),
      isDone: (id) => this.isDone(id),
      onChange: (listener) => this.onChange(listener),
      pollForeign: (ids) => this.others.poll(ids, () => this.emit()),
    };
    return waitForJobs(source, jobIds, timeoutMs, signal, onUpdate);
  }

  /**
   * Stops taking work and aborts what runs, without recording it: those tasks load as
   * `interrupted` next time, exactly as after a crash, and can be resumed.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    this.stateLimit?.close();
    this.scheduler.stop();
    const reason = shuttingDown();
    for (const job of this.jobs.values()) {
      job.prepareAbort?.abort(reason);
      for (const controller of job.running.values()) controller.abort(reason);
    }
    await this.runs.close(graceMs);
    await this.store.flush();
  }

  private newJob(meta: JobMeta): Job {
    this.pipelines.link(meta);
    return new Job(meta, this.totals.get(meta.kind));
  }

  private snapshot(job: Job): JobSnapshot {
    const snapshot = job.snapshot(this.now().getTime());
    const feeds = this.pipelines.feedsOf(job.id);
    if (feeds.length > 0) snapshot.feeds = feeds;
    return this.pipelines.withUpstreamTasks(snapshot);
  }

  private require(jobId: string): Job {
    const job = this.jobs.get(jobId);
    const damaged = job ? undefined : this.others.damaged.get(jobId);
    if (damaged) throw damagedJobError(damaged, this.store.jobDir(jobId));
    if (!job) {
      throw new MonitorError('JOB_NOT_FOUND', `No job "${jobId}" here.`, {
        hint: `Call list_jobs for the known job ids; jobs are removed ${this.retentionDays} days after they finish (or sooner, oldest first, when the state directory outgrows its size limit).`,
      });
    }
    return job;
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

function shuttingDown(): MonitorError {
  return new MonitorError('SHUTTING_DOWN', 'The server is shutting down.', {
    hint: 'Submit again after the client has restarted it; finished results stay collectable.',
  });
}
