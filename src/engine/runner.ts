import { MonitorError, toTaskError } from '../errors.js';
import type { Logger } from '../log.js';
import type { EngineContext } from './context.js';
import type { Job } from './job.js';
import { ProgressBoard, type TaskReporter } from './progress.js';
import { batchLimit } from './scheduler.js';
import type { Pool, TaskContext, TaskRecord, TaskResult, UpstreamView } from './types.js';

/** A queued task taken to run, with what its upstream came to when it is a later stage's. */
export interface TaskToRun {
  index: number;
  input: unknown;
  upstream?: UpstreamView;
}

/**
 * Runs one task, or a batch of a job's tasks, on its pool: the job's one-off preparation first
 * (shared by its tasks, started by the first), then the run. One result per task, in order. Never
 * rejects: whatever goes wrong becomes failed results, and tasks aborted meanwhile fail with the
 * abort's reason. A job whose pool batches has even a lone task go through runBatch: the pool
 * decides how a batch of one runs.
 */
export async function runTasks(
  pool: Pool,
  job: Job,
  tasks: readonly TaskToRun[],
  run: {
    outputDir: string;
    signal: AbortSignal;
    progress?: ReadonlyMap<number, Pick<TaskReporter, 'report' | 'note'>>;
  },
  log: Logger,
): Promise<TaskResult[]> {
  const { signal } = run;
  try {
    if (pool.prepareJob && !job.prepared) {
      job.prepareAbort = new AbortController();
      job.prepared = pool
        .prepareJob({ jobId: job.id, options: job.meta.options, signal: job.prepareAbort.signal })
        .catch((error: unknown) => log.warn(`preparing job ${job.id} failed, its tasks run anyway: ${String(error)}`));
    }
    if (job.prepared) await job.prepared;
    signal.throwIfAborted();
    const contexts: TaskContext[] = tasks.map(({ index, input, upstream }) => {
      const context: TaskContext = {
        jobId: job.id,
        index,
        input,
        options: job.meta.options,
        outputDir: run.outputDir,
        attempt: job.attemptOf(index),
        signal,
      };
      if (upstream) context.upstream = upstream;
      const reporter = run.progress?.get(index);
      if (reporter) {
        context.progress = reporter.report;
        context.note = reporter.note;
      }
      return context;
    });
    const [only] = contexts;
    if (only && contexts.length === 1 && batchLimit(pool, job.meta.options) === 1) return [await pool.run(only)];
    if (!pool.runBatch)
      throw new MonitorError(
        'INTERNAL',
        `The ${pool.kind} pool was given ${contexts.length} tasks at once but cannot run a batch.`,
      );
    const results = await pool.runBatch(contexts);
    if (results.length !== contexts.length) {
      throw new MonitorError(
        'INTERNAL',
        `The ${pool.kind} pool returned ${results.length} results for a batch of ${contexts.length} tasks.`,
      );
    }
    return results;
  } catch (error) {
    const failure: TaskResult = { ok: false, error: toTaskError(signal.aborted ? signal.reason : error) };
    return tasks.map(() => failure);
  }
}

/**
 * The record of a finished task. Work that completed is kept even if a cancel or shutdown arrived
 * meanwhile; a task stopped by a cancel is `cancelled`, whatever its pool made of the abort.
 */
export function toRecord(
  job: Job,
  task: { index: number; label: string | undefined },
  startedAt: Date,
  finishedAt: Date,
  aborted: boolean,
  result: TaskResult,
): TaskRecord {
  const { index } = task;
  const state = result.ok ? 'succeeded' : aborted ? 'cancelled' : 'failed';
  const record: TaskRecord = {
    index,
    state,
    attempt: job.attemptOf(index),
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - startedAt.getTime(),
  };
  if (task.label !== undefined) record.label = task.label;
  if (result.value !== undefined) record.value = result.value;
  if (state === 'cancelled')
    record.error = { code: 'CANCELLED', message: 'Cancelled while running; its process was stopped.' };
  else if (result.error) record.error = result.error;
  if (result.files) record.files = result.files;
  return record;
}

export interface TaskRunsHooks {
  /** A task's record is on disk and counted: later stages may go. */
  recorded(job: Job, record: TaskRecord): Promise<void>;
  /** A job has ended (its end on disk). */
  finished(job: Job): void;
  /** The server is shutting down: what ends now is not recorded (it loads as interrupted). */
  closing(): boolean;
}

/**
 * A job's tasks from start to record: each run's start is noted (attempts count every run), the
 * pool runs it, its record is appended and only then counted, and the last record ends the job.
 */
export class TaskRuns {
  private readonly ctx: EngineContext;
  private readonly hooks: TaskRunsHooks;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly peakWrites = new Map<string, NodeJS.Timeout>();
  /** What the running tasks say they have done so far (TaskContext.progress). */
  readonly progress: ProgressBoard;

  constructor(ctx: EngineContext, hooks: TaskRunsHooks) {
    this.ctx = ctx;
    this.hooks = hooks;
    this.progress = new ProgressBoard(ctx.now);
  }

  /** Starts one run (the scheduler's StartTask): one task, or a batch of a job's tasks. */
  start(pool: Pool, job: Job, tasks: readonly TaskToRun[]): void {
    const { store, log, scheduler } = this.ctx;
    // One controller for the tasks of one run (a batch shares its process): a cancel stops them together.
    const controller = new AbortController();
    const started = tasks.map(({ index, input }) => {
      job.running.set(index, controller);
      job.setState(index, 'running');
      job.started(index);
      // Not waited for (it rides along with the next lines): a run cut off in the moment before counts once less.
      store
        .appendRun(job.id, index)
        .catch((error: unknown) => log.warn(`could not note a run of ${job.id}#${index}: ${String(error)}`));
      return { index, label: pool.label?.(input) };
    });
    if (job.running.size > job.peakRunning) {
      job.peakRunning = job.running.size;
      this.notePeak(job);
    }
    const startedAt = this.ctx.now();
    const reporters = tasks.map(({ index }) => ({ index, ...this.progress.open(job.id, index) }));
    const progress = new Map(reporters.map((reporter) => [reporter.index, reporter]));
    const endProgress = (): void => reporters.forEach((reporter) => reporter.end());
    const runOn = { outputDir: store.outputDir(job.id), signal: controller.signal, progress };
    const run = runTasks(pool, job, tasks, runOn, log)
      .then(async (results) => {
        // Dropped as the task stops running: from now on its record tells what it did.
        endProgress();
        for (const { index } of started) job.running.delete(index);
        // The slot goes to the next run now, not after the records are on disk.
        scheduler.finished(job);
        const recorded = await Promise.allSettled(
          started.map((task, at) => this.record(job, task, startedAt, controller.signal, results[at] ?? noResult)),
        );
        recorded.forEach((outcome, at) => {
          if (outcome.status === 'rejected')
            log.error(`task ${started[at]?.index ?? '?'} of ${job.id}: ${String(outcome.reason)}`);
        });
      })
      .catch((error: unknown) =>
        log.error(`tasks ${started.map((task) => task.index).join(', ')} of ${job.id}: ${String(error)}`),
      )
      .finally(() => {
        endProgress();
        this.inFlight.delete(run);
        this.ctx.emit();
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
    if (this.hooks.closing() && signal.aborted && !result.ok) {
      // Not recorded on purpose: the next start sees it as interrupted, ready to resume.
      job.setState(task.index, 'interrupted');
      return;
    }
    await this.persist(job, toRecord(job, task, startedAt, this.ctx.now(), signal.aborted, result));
  }

  /** Appends a finished task's record, counts it, ends the job when it was the last, and feeds later stages. */
  async persist(job: Job, record: TaskRecord): Promise<void> {
    const { index } = record;
    job.settling++;
    try {
      // Counted once on disk, not before: what a reply reports (counts, done) survives a crash.
      await this.ctx.store
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
    await this.hooks.recorded(job, record);
  }

  /**
   * Stops what is left of a job: its queued tasks are recorded as cancelled at once, its running
   * ones aborted (recorded as cancelled when they stop), and the cancel noted in its metadata.
   */
  async cancel(job: Job): Promise<void> {
    const { store, scheduler } = this.ctx;
    const finishedAt = this.ctx.now().toISOString();
    scheduler.remove(job);
    const pool = scheduler.pool(job.meta.kind);
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
      if (dropped.length > 0) await store.appendResults(job.id, dropped);
    } finally {
      for (const record of dropped) job.setState(record.index, 'cancelled');
      job.applied += dropped.length;
    }
    await store.writeMeta(job.meta);
    await this.finishIfDone(job);
  }

  /** The one place a job's run ends: its last task recorded, or a cancel with nothing left running. */
  async finishIfDone(job: Job): Promise<void> {
    if (!job.isDone || job.meta.finishedAt !== undefined) return;
    this.ctx.scheduler.pool(job.meta.kind)?.jobEnded?.(job.id);
    job.meta.finishedAt = this.ctx.now().toISOString();
    job.meta.peakRunning = job.peakRunning;
    await this.ctx.store.writeMeta(job.meta);
    // Finished: whichever server resumes it next takes it over (see Owners.take).
    job.owned = false;
    this.hooks.finished(job);
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
      this.ctx.store
        .writeMeta(job.meta)
        .catch((error: unknown) => this.ctx.log.warn(`could not save the peak of ${job.id}: ${String(error)}`));
    }, 1000);
    timer.unref();
    this.peakWrites.set(job.id, timer);
  }

  /** Stops the pending peak writes and waits (at most `graceMs`) for the runs in flight to be recorded. */
  async close(graceMs: number): Promise<void> {
    for (const timer of this.peakWrites.values()) clearTimeout(timer);
    this.peakWrites.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

const noResult: TaskResult = {
  ok: false,
  error: { code: 'INTERNAL', message: 'The pool gave no result for this task.' },
};
