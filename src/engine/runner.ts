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
    /** Given to the tasks as their `began` (see Pool.reportsBegin). */
    began?: (index: number) => void;
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
      const { began } = run;
      if (began) context.began = () => began(index);
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
      return { index, label: pool.label?.(input) };
    });
    const began = this.beginRuns(pool, job, started);
    if (job.running.size > job.peakRunning) {
      job.peakRunning = job.running.size;
      this.notePeak(job);
    }
    const startedAt = this.ctx.now();
    const reporters = tasks.map(({ index }) => ({ index, ...this.progress.open(job.id, index) }));
    const progress = new Map(reporters.map((reporter) => [reporter.index, reporter]));
    const endProgress = (): void => reporters.forEach((reporter) => reporter.end());
    const runOn = { outputDir: store.outputDir(job.id), signal: controller.signal, progress, began: began.note };
    // The slot goes to the next run once these tasks are counted (a few µs after the run: their
    // records are appended on this thread), not before: counts.running stays within the job's limit.
    const slot = slotOf(started.length, () => scheduler.finished(job));
    const run = runTasks(pool, job, tasks, runOn, log)
      .then(async (results) => {
        // Dropped as the task stops running: from now on its record tells what it did.
        endProgress();
        for (const { index } of started) job.running.delete(index);
        began.settle();
        const recorded = await Promise.allSettled(
          started.map((task, at) =>
            this.record(job, task, startedAt, controller.signal, results[at] ?? noResult, slot.counted),
          ),
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
        // Whatever went wrong above: the slot is not kept.
        slot.release();
        endProgress();
        this.inFlight.delete(run);
        this.ctx.emit();
      });
    this.inFlight.add(run);
  }

  /**
   * When the runs of `started` count (an attempt, noted in runs.log): once the pool says their work
   * began (Pool.reportsBegin), else at once. `settle` at the run's end: one that never began (its
   * process could not start, a cancel while it waited) is no attempt, and its record says so.
   */
  private beginRuns(
    pool: Pool,
    job: Job,
    started: ReadonlyArray<{ index: number }>,
  ): { note: ((index: number) => void) | undefined; settle(): void } {
    const pending = new Set(started.map(({ index }) => index));
    const note = (index: number): void => {
      if (!pending.delete(index)) return;
      // Not waited for (it rides along with the next lines): a run cut off in the moment before counts once less.
      this.ctx.store
        .appendRun(job.id, index)
        .catch((error: unknown) => this.ctx.log.warn(`could not note a run of ${job.id}#${index}: ${String(error)}`));
    };
    if (!pool.reportsBegin) for (const { index } of started) note(index);
    return {
      note: pool.reportsBegin ? note : undefined,
      settle() {
        for (const index of pending) job.notStarted(index);
        pending.clear();
      },
    };
  }

  private async record(
    job: Job,
    task: { index: number; label: string | undefined },
    startedAt: Date,
    signal: AbortSignal,
    result: TaskResult,
    counted: () => void,
  ): Promise<void> {
    if (this.hooks.closing() && signal.aborted && !result.ok) {
      // Not recorded on purpose: the next start sees it as interrupted, ready to resume.
      job.setState(task.index, 'interrupted');
      counted();
      return;
    }
    await this.persist(job, toRecord(job, task, startedAt, this.ctx.now(), signal.aborted, result), counted);
  }

  /**
   * Appends a finished task's record, counts it (then calls `counted`), ends the job when it was
   * the last, and feeds later stages.
   */
  async persist(job: Job, record: TaskRecord, counted?: () => void): Promise<void> {
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
          counted?.();
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
   * Its interrupted tasks (no process runs them: their server stopped) are recorded as cancelled
   * too, so the job no longer waits for a resume.
   */
  async cancel(job: Job): Promise<void> {
    const { store, scheduler } = this.ctx;
    // Awaited only when there are any: a running job's queue is emptied in this same turn.
    const interrupted = job.counts.interrupted > 0 ? await this.interruptedTasks(job) : [];
    const finishedAt = this.ctx.now().toISOString();
    scheduler.remove(job);
    const pool = scheduler.pool(job.meta.kind);
    const cancelled = (index: number, input: unknown, message: string): TaskRecord => {
      const record: TaskRecord = {
        index,
        state: 'cancelled',
        attempt: job.attemptOf(index),
        finishedAt,
        error: { code: 'CANCELLED', message },
      };
      const label = pool?.label?.(input);
      if (label !== undefined) record.label = label;
      return record;
    };
    const dropped: TaskRecord[] = [
      ...job.dropQueued().map(({ index, input }) => cancelled(index, input, 'Cancelled before it started.')),
      ...interrupted.map(({ index, input }) =>
        cancelled(index, input, 'Cancelled after its server stopped, before it ran again.'),
      ),
    ];
    const reason = new MonitorError('CANCELLED', 'Job cancelled.');
    job.prepareAbort?.abort(reason);
    for (const controller of job.running.values()) controller.abort(reason);
    job.meta.cancelledAt ??= finishedAt;
    // Out of the queue already; counted as cancelled once on disk, like every finished task.
    try {
      if (dropped.length > 0) await store.appendResults(job.id, dropped);
    } finally {
      for (const record of dropped) job.apply(record);
      job.applied += dropped.length;
    }
    await store.writeMeta(job.meta);
    await this.finishIfDone(job);
  }

  /** A job's interrupted tasks with their inputs. */
  private async interruptedTasks(job: Job): Promise<Array<{ index: number; input: unknown }>> {
    const indices = job.indicesIn(['interrupted']);
    const inputs = await this.ctx.store.readInputs(job.id);
    // Runs cut off by the crash left no record, but they count.
    job.countRuns(await this.ctx.store.readRuns(job.id));
    return indices.map((index) => ({ index, input: inputs[index] }));
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

/**
 * One slot of the scheduler held by a run of `tasks` tasks: `counted` once per task, and the slot
 * is given back when all are (or by `release`, at the end of the run whatever happened); once.
 */
function slotOf(tasks: number, finished: () => void): { counted: () => void; release: () => void } {
  let left = tasks;
  const release = (): void => {
    if (left < 0) return;
    left = -1;
    finished();
  };
  return {
    counted: () => {
      if (--left === 0) release();
    },
    release,
  };
}

const noResult: TaskResult = {
  ok: false,
  error: { code: 'INTERNAL', message: 'The pool gave no result for this task.' },
};
