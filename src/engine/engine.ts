import { MonitorError } from '../errors.js';
import type { Logger } from '../log.js';
import { latestRecords } from '../store/records.js';
import { JobStore } from '../store/store.js';
import { applyNewRecords, FOREIGN_POLL_MS, Owners } from './foreign.js';
import { Job } from './job.js';
import { runTasks, toRecord } from './runner.js';
import { Scheduler, type TakenTask } from './scheduler.js';
import { StateLimit } from './state-limit.js';
import type {
  JobMeta,
  JobSnapshot,
  Ownership,
  Pool,
  SubmitRequest,
  TaskRecord,
  TaskResult,
  TaskState,
  UpstreamView,
} from './types.js';

export interface EngineOptions {
  store: JobStore;
  pools: readonly Pool[];
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
 * scheduler (scheduler.ts), task runs (runner.ts) and jobs other servers own (foreign.ts). Knows no
 * worker kind and nothing of MCP: a pool is a name, a limit and `run(task)`.
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
  /** A pipeline's links: each job's later stages (JobMeta.after points the other way). */
  private readonly dependents = new Map<string, Set<string>>();
  private readonly scheduler: Scheduler;
  private readonly owners: Owners;
  private readonly stateLimit: StateLimit | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly peakWrites = new Map<string, NodeJS.Timeout>();
  private closing = false;
  /** How far this server has read the state directory's change log. */
  private changesOffset = 0;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.log = options.log;
    this.now = options.now ?? (() => new Date());
    this.retentionDays = options.retentionDays;
    this.owners = new Owners(options.store, options.ownership);
    this.scheduler = new Scheduler(options.pools, (pool, job, tasks) => this.start(pool, job, tasks));
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
    // Every folder is read now; from here on, only what the change log names.
    this.changesOffset = this.store.changesEnd();
    const cutoff = this.now().getTime() - this.retentionDays * 86_400_000;
    let removed = 0;
    let interrupted = 0;
    for (const meta of await this.store.loadAll()) {
      // Unfinished jobs are kept: they load as interrupted (or stay with the live server running them).
      if (meta.finishedAt !== undefined && Date.parse(meta.finishedAt) < cutoff) {
        await this.store.removeJob(meta.id);
        removed++;
        continue;
      }
      if (await this.adopt(meta)) interrupted++;
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
    const changes = this.store.readChanges(this.changesOffset);
    this.changesOffset = changes.offset;
    const changed = new Set(changes.reset ? (await this.store.loadAllReadOnly()).map((meta) => meta.id) : changes.ids);
    for (const id of new Set([...changed, ...(jobIds ?? [])])) {
      if (!JobStore.isJobId(id)) continue;
      const known = this.jobs.get(id);
      if (known) {
        if (changed.has(id)) await this.reconsider(known);
        continue;
      }
      const meta = await this.store.readMeta(id).catch(() => undefined);
      if (meta) await this.adopt(meta);
    }
    const jobs = jobIds === undefined ? [...this.jobs.values()] : jobIds.map((id) => this.jobs.get(id));
    // Their metadata changes only with a line in the change log; their results file is looked at.
    for (const job of jobs) if (job?.foreign) await this.follow(job, changed.has(job.id));
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
    if (request.after) this.checkUpstream(request.after, request.inputs.length);
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
    this.owners.stamp(meta, 1);
    await this.store.createJob(meta, request.inputs, this.owners.me);
    const job = this.newJob(meta);
    job.owned = true;
    this.jobs.set(meta.id, job);
    if (meta.after) {
      request.inputs.forEach((input, index) => job.hold(index, input));
      await this.feedHeld(job);
    } else {
      request.inputs.forEach((input, index) => job.enqueue(index, input));
      this.scheduler.add(job);
    }
    this.emit();
    return this.snapshot(job);
  }

  /** A later stage runs on a job this server runs or has finished, one task per upstream task for `each`. */
  private checkUpstream(after: NonNullable<SubmitRequest['after']>, taskCount: number): void {
    const upstream = this.require(after.job);
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

  /** The jobs of `jobId`'s pipeline, first stage first (just the job when it has no stages). */
  pipelineOf(jobId: string): string[] {
    let root = this.require(jobId);
    const seen = new Set<string>([root.id]);
    for (
      let up = root.meta.after && this.jobs.get(root.meta.after.job);
      up && !seen.has(up.id);
      up = up.meta.after && this.jobs.get(up.meta.after.job)
    ) {
      seen.add(up.id);
      root = up;
    }
    const order = [root.id];
    for (let at = 0; at < order.length; at++) {
      for (const next of this.dependents.get(order[at] ?? '') ?? [])
        if (!order.includes(next) && this.jobs.has(next)) order.push(next);
    }
    return order;
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

  private async cancelOne(jobId: string): Promise<JobSnapshot> {
    const job = this.require(jobId);
    // A finished job keeps its state: there is nothing left to stop.
    if (!job.foreign && job.isDone) return this.snapshot(job);
    await this.own(job);
    if (job.isDone) return this.snapshot(job);
    const finishedAt = this.now().toISOString();
    this.scheduler.remove(job);
    const pool = this.scheduler.pool(job.meta.kind);
    const dropped: TaskRecord[] = job.dropQueued().map(({ index, input }) => {
      const record: TaskRecord = {
        index,
        state: 'cancelled',
        attempt: job.attemptOf(index),
        finishedAt,
        error: { code: 'CANCELLED', message: 'Cancelled before it started.' },
      };
      const label = pool?.label?.(input);
      if (label !== undefined) record.label = label;
      return record;
    });
    const reason = new MonitorError('CANCELLED', 'Job cancelled.');
    job.prepareAbort?.abort(reason);
    for (const controller of job.running.values()) controller.abort(reason);
    job.meta.cancelledAt ??= finishedAt;
    // Out of the queue already; counted as cancelled once on disk, like every finished task.
    try {
      if (dropped.length > 0) await this.store.appendResults(jobId, dropped);
    } finally {
      for (const record of dropped) job.setState(record.index, 'cancelled');
      job.applied += dropped.length;
    }
    await this.store.writeMeta(job.meta);
    await this.finishIfDone(job);
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
      const after = this.jobs.get(id)?.meta.after;
      // A reduce over results that change runs again, whatever its own state.
      const stale = after?.mode === 'all' && rerun.has(after.job);
      const count = (await this.resumeOne(id, stale ? { failed: true, cancelled: true, succeeded: true } : include))
        .requeued;
      if (count > 0) rerun.add(id);
      requeued += count;
    }
    return { snapshot: this.snapshotOf(jobId), requeued };
  }

  private async resumeOne(
    jobId: string,
    include: { failed?: boolean; cancelled?: boolean; succeeded?: boolean },
  ): Promise<{ snapshot: JobSnapshot; requeued: number }> {
    const job = this.require(jobId);
    if (!this.scheduler.pool(job.meta.kind))
      throw new MonitorError(
        'JOB_NOT_RESUMABLE',
        `Job ${jobId} is of kind "${job.meta.kind}", which this server does not run.`,
      );
    const wanted = [
      'interrupted',
      ...(include.failed ? (['failed'] as const) : []),
      ...(include.cancelled ? (['cancelled'] as const) : []),
      ...(include.succeeded ? (['succeeded'] as const) : []),
    ] as const;
    // Nothing to run again: no need to take the job over.
    if (!job.foreign && job.isDone && job.indicesIn(wanted).length === 0)
      return { snapshot: this.snapshot(job), requeued: 0 };
    const generation = await this.own(job);
    const indices = job.indicesIn(wanted);
    if (indices.length === 0) {
      // Still running here (a pipeline resumed while a stage runs): it keeps its owner.
      if (job.isDone) job.owned = false;
      return { snapshot: this.snapshot(job), requeued: 0 };
    }
    const inputs = await this.store.readInputs(jobId);
    // Runs cut off by a crash left no record, but they count.
    job.countRuns(await this.store.readRuns(jobId));
    for (const index of indices) {
      if (job.meta.after) job.hold(index, inputs[index]);
      else job.enqueue(index, inputs[index]);
    }
    delete job.meta.finishedAt;
    delete job.meta.cancelledAt;
    this.owners.stamp(job.meta, generation);
    await this.store.writeMeta(job.meta);
    if (job.meta.after) await this.feedHeld(job);
    else this.scheduler.add(job);
    this.emit();
    return { snapshot: this.snapshot(job), requeued: indices.length };
  }

  /** What each task of a job works on (its label, else `#index`), for a later stage to name its tasks after. */
  async labelsOf(jobId: string): Promise<string[]> {
    const job = this.require(jobId);
    const pool = this.scheduler.pool(job.meta.kind);
    return (await this.store.readInputs(jobId)).map((input, index) => pool?.label?.(input) ?? `#${index}`);
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

  list(): JobSnapshot[] {
    return [...this.jobs.values()]
      .map((job) => this.snapshot(job))
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
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
    const job = this.jobs.get(jobId);
    return job === undefined || (job.isDone && job.settling === 0);
  }

  /**
   * Waits until every listed job has no queued or running task, `timeoutMs` passes, or `signal`
   * aborts; then resolves (never rejects). `onUpdate` runs after each change.
   */
  async waitFor(
    jobIds: readonly string[],
    timeoutMs: number,
    signal?: AbortSignal,
    onUpdate?: () => void,
  ): Promise<boolean> {
    await this.refresh(jobIds);
    const done = (): boolean => jobIds.every((id) => this.isDone(id));
    if (done() || timeoutMs <= 0 || signal?.aborted) return done();
    // Jobs of another server process change only on disk: poll those.
    const foreign = jobIds.filter((id) => this.jobs.get(id)?.foreign);
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        unsubscribe();
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      const poll =
        foreign.length > 0
          ? setInterval(
              () =>
                void this.refresh(foreign).then(
                  () => this.emit(),
                  () => undefined,
                ),
              FOREIGN_POLL_MS,
            )
          : undefined;
      const unsubscribe = this.onChange(() => {
        onUpdate?.();
        if (done()) finish();
      });
      signal?.addEventListener('abort', finish, { once: true });
    });
    return done();
  }

  /**
   * Stops taking work and aborts what runs, without recording it: those tasks load as
   * `interrupted` next time, exactly as after a crash, and can be resumed.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    this.stateLimit?.close();
    for (const timer of this.peakWrites.values()) clearTimeout(timer);
    this.peakWrites.clear();
    this.scheduler.stop();
    const reason = shuttingDown();
    for (const job of this.jobs.values()) {
      job.prepareAbort?.abort(reason);
      for (const controller of job.running.values()) controller.abort(reason);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    await this.store.flush();
  }

  /** Takes a job found on disk into memory; true when it had tasks cut off by a dead process. */
  private async adopt(meta: JobMeta): Promise<boolean> {
    const job = this.newJob(meta);
    this.jobs.set(meta.id, job);
    if (this.owners.ownedElsewhere(meta)) {
      job.foreign = true;
      await this.follow(job);
      return false;
    }
    await applyNewRecords(this.store, job);
    return this.interrupt(job);
  }

  /** Re-reads a job another server runs; once that server is gone, its leftovers are interrupted. */
  private async follow(job: Job, metaChanged = true): Promise<void> {
    if (await this.owners.follow(job, metaChanged)) return;
    job.foreign = false;
    await this.interrupt(job);
  }

  /** A job this server does not run changed on disk: another server may have taken it over. */
  private async reconsider(job: Job): Promise<void> {
    if (job.owned || job.foreign) return;
    const meta = await this.store.readMeta(job.id).catch(() => undefined);
    if (!meta) return;
    job.meta = await this.owners.latest(meta);
    if (this.owners.ownedElsewhere(meta)) {
      job.foreign = true;
      await this.follow(job);
    } else {
      await applyNewRecords(this.store, job);
    }
  }

  /**
   * Makes this server the job's owner before it cancels or resumes it: exactly one server owns a
   * job at a time. Returns the ownership generation held; refuses when another live server runs it.
   */
  private async own(job: Job): Promise<number> {
    // Running here: this server holds the latest generation until the job finishes.
    if (job.owned) return job.meta.ownerGeneration ?? 0;
    // A job followed from another server: bring it up to date (its owner may be gone now).
    if (job.foreign) await this.follow(job);
    const generation = job.foreign ? undefined : await this.owners.take(job);
    if (generation !== undefined) {
      job.owned = true;
      return generation;
    }
    job.foreign = true;
    await this.follow(job);
    throw new MonitorError(
      'JOB_OWNED_ELSEWHERE',
      `Job ${job.id} is run by another monitor-mcp process (pid ${job.meta.ownerPid ?? '?'}) on the same state directory.`,
      {
        hint: 'Cancel or resume it from the client session that started it (or wait for it to finish); its results are collectable from here.',
      },
    );
  }

  /** Marks what no process runs any more as interrupted, and the job as ended; true when anything was. */
  private async interrupt(job: Job): Promise<boolean> {
    const cut = job.interruptUnfinished();
    if (cut && job.meta.finishedAt === undefined) {
      job.meta.finishedAt = this.now().toISOString();
      await this.store.writeMeta(job.meta);
    }
    return cut;
  }

  private start(pool: Pool, job: Job, tasks: readonly TakenTask[]): void {
    // One controller for the tasks of one run (a batch shares its process): a cancel stops them together.
    const controller = new AbortController();
    const started = tasks.map(({ index, input }) => {
      job.running.set(index, controller);
      job.setState(index, 'running');
      job.started(index);
      // Not waited for (it rides along with the next lines): a run cut off in the moment before counts once less.
      this.store
        .appendRun(job.id, index)
        .catch((error: unknown) => this.log.warn(`could not note a run of ${job.id}#${index}: ${String(error)}`));
      return { index, label: pool.label?.(input) };
    });
    if (job.running.size > job.peakRunning) {
      job.peakRunning = job.running.size;
      this.notePeak(job);
    }
    const startedAt = this.now();
    const run = runTasks(
      pool,
      job,
      tasks,
      { outputDir: this.store.outputDir(job.id), signal: controller.signal },
      this.log,
    )
      .then(async (results) => {
        for (const { index } of started) job.running.delete(index);
        // The slot goes to the next run now, not after the records are on disk.
        this.scheduler.finished(job);
        const recorded = await Promise.allSettled(
          started.map((task, at) =>
            this.record(
              job,
              task,
              startedAt,
              controller.signal,
              results[at] ?? {
                ok: false,
                error: { code: 'INTERNAL', message: 'The pool gave no result for this task.' },
              },
            ),
          ),
        );
        recorded.forEach((outcome, at) => {
          if (outcome.status === 'rejected')
            this.log.error(`task ${started[at]?.index ?? '?'} of ${job.id}: ${String(outcome.reason)}`);
        });
      })
      .catch((error: unknown) =>
        this.log.error(`tasks ${started.map((task) => task.index).join(', ')} of ${job.id}: ${String(error)}`),
      )
      .finally(() => {
        this.inFlight.delete(run);
        this.emit();
      });
    this.inFlight.add(run);
  }

  private async record(
    job: Job,
    task: { index: number; label: string | undefined },
    startedAt: Date,
    signal: AbortSignal,
    result: TaskResult,
  ): Promise<void> {
    const { index } = task;
    if (this.closing && signal.aborted && !result.ok) {
      // Not recorded on purpose: the next start sees it as interrupted, ready to resume.
      job.setState(index, 'interrupted');
      return;
    }
    await this.persist(job, toRecord(job, task, startedAt, this.now(), signal.aborted, result));
  }

  /** Appends a finished task's record, counts it, ends the job when it was the last, and feeds later stages. */
  private async persist(job: Job, record: TaskRecord): Promise<void> {
    const { index } = record;
    job.settling++;
    try {
      // Counted once on disk, not before: what a reply reports (counts, done) survives a crash.
      await this.store
        .appendResult(job.id, record)
        .catch((error: unknown) => {
          job.storeError = `task ${index}'s result could not be saved (${String(error)}); it will show as interrupted after a restart`;
          throw error;
        })
        .finally(() => {
          // Applied even when the write failed: the job must still end rather than show it running forever.
          job.apply(record);
          job.applied++;
        });
      await this.finishIfDone(job);
    } finally {
      job.settling--;
    }
    await this.feedDependents(job, record);
  }

  /** A task of `upstream` is recorded: its `each` partners in later stages may go; an `all` stage goes once the job has ended. */
  private async feedDependents(upstream: Job, record: TaskRecord): Promise<void> {
    for (const id of this.dependents.get(upstream.id) ?? []) {
      const job = this.jobs.get(id);
      if (!job?.owned || job.foreign || !job.meta.after) continue;
      if (job.meta.after.mode === 'all') {
        if (this.isDone(upstream.id)) await this.feedHeld(job);
      } else if (job.isHeld(record.index) && upstream.stateOf(record.index) === record.state) {
        await this.feedOne(job, upstream, record);
        this.scheduler.add(job);
      }
    }
  }

  /** Releases the held tasks of a later stage whose upstream is in (from disk: after a submit, resume or restart). */
  private async feedHeld(job: Job): Promise<void> {
    const after = job.meta.after;
    if (!after || job.heldIndices().length === 0) return;
    const upstream = this.jobs.get(after.job);
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
      if (!this.isDone(upstream.id) || upstream.counts.interrupted > 0) return;
      const view: UpstreamView = {
        jobId: upstream.id,
        outputDir: this.store.outputDir(upstream.id),
        records: latestRecords(await this.store.readResults(upstream.id)),
      };
      for (const index of job.heldIndices()) job.release(index, view);
      this.scheduler.add(job);
      return;
    }
    const latest = new Map(
      latestRecords(await this.store.readResults(upstream.id)).map((record) => [record.index, record]),
    );
    for (const index of job.heldIndices()) {
      const record = latest.get(index);
      if (record && job.isHeld(index) && upstream.stateOf(index) === record.state)
        await this.feedOne(job, upstream, record);
    }
    this.scheduler.add(job);
  }

  /** One task of an `each` stage gets its upstream's record: it queues on a success, else it is recorded as failed (or cancelled) with why. */
  private async feedOne(job: Job, upstream: Job, record: TaskRecord): Promise<void> {
    if (record.state === 'succeeded') {
      job.release(record.index, {
        jobId: upstream.id,
        outputDir: this.store.outputDir(upstream.id),
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
      finishedAt: this.now().toISOString(),
      error,
    };
    const label = this.scheduler.pool(job.meta.kind)?.label?.(input);
    if (label !== undefined) record.label = label;
    await this.persist(job, record);
  }

  /**
   * Saves a new peak of the job's tasks at once within a second (one write however fast it climbs):
   * a job cut off by a crash still shows how far it got.
   */
  private notePeak(job: Job): void {
    if (this.peakWrites.has(job.id)) return;
    const timer = setTimeout(() => {
      this.peakWrites.delete(job.id);
      if (job.meta.finishedAt !== undefined || job.meta.peakRunning === job.peakRunning) return;
      job.meta.peakRunning = job.peakRunning;
      this.store
        .writeMeta(job.meta)
        .catch((error: unknown) => this.log.warn(`could not save the peak of ${job.id}: ${String(error)}`));
    }, 1000);
    timer.unref();
    this.peakWrites.set(job.id, timer);
  }

  /** The one place a job's run ends: its last task recorded, or a cancel with nothing left running. */
  private async finishIfDone(job: Job): Promise<void> {
    if (!job.isDone || job.meta.finishedAt !== undefined) return;
    this.scheduler.pool(job.meta.kind)?.jobEnded?.(job.id);
    job.meta.finishedAt = this.now().toISOString();
    job.meta.peakRunning = job.peakRunning;
    await this.store.writeMeta(job.meta);
    // Finished: whichever server resumes it next takes it over (see Owners.take).
    job.owned = false;
    this.stateLimit?.changed(job.id);
  }

  private newJob(meta: JobMeta): Job {
    if (meta.after) {
      const feeds = this.dependents.get(meta.after.job) ?? new Set<string>();
      feeds.add(meta.id);
      this.dependents.set(meta.after.job, feeds);
    }
    return new Job(meta, this.scheduler.pool(meta.kind)?.totals);
  }

  private snapshot(job: Job): JobSnapshot {
    const snapshot = job.snapshot(this.now().getTime());
    const feeds = [...(this.dependents.get(job.id) ?? [])].filter((id) => this.jobs.has(id));
    if (feeds.length > 0) snapshot.feeds = feeds;
    return snapshot;
  }

  private require(jobId: string): Job {
    const job = this.jobs.get(jobId);
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
