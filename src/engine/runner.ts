import { MonitorError, toTaskError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Job } from './job.js';
import type { Pool, TaskContext, TaskRecord, TaskResult, UpstreamView } from './types.js';

/** The most tasks of a job with these options one run takes together (1: one at a time, through `run`). */
export function batchLimit(pool: Pool, options: unknown): number {
  if (!pool.runBatch || !pool.batchSize) return 1;
  const size = pool.batchSize(options);
  return Number.isInteger(size) && size > 1 ? size : 1;
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
  tasks: ReadonlyArray<{ index: number; input: unknown; upstream?: UpstreamView }>,
  run: { outputDir: string; signal: AbortSignal },
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
