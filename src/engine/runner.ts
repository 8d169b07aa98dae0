import { toTaskError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Job } from './job.js';
import type { Pool, TaskRecord, TaskResult } from './types.js';

/**
 * Runs one task on its pool: the job's one-off preparation first (shared by its tasks, started by
 * the first), then the task. Never rejects: whatever goes wrong becomes a failed result, and a task
 * aborted meanwhile fails with the abort's reason.
 */
export async function runTask(
  pool: Pool,
  job: Job,
  task: { index: number; input: unknown; outputDir: string; signal: AbortSignal },
  log: Logger,
): Promise<TaskResult> {
  const { signal } = task;
  try {
    if (pool.prepareJob && !job.prepared) {
      job.prepareAbort = new AbortController();
      job.prepared = pool
        .prepareJob({ jobId: job.id, options: job.meta.options, signal: job.prepareAbort.signal })
        .catch((error: unknown) => log.warn(`preparing job ${job.id} failed, its tasks run anyway: ${String(error)}`));
    }
    if (job.prepared) await job.prepared;
    signal.throwIfAborted();
    return await pool.run({
      jobId: job.id,
      index: task.index,
      input: task.input,
      options: job.meta.options,
      outputDir: task.outputDir,
      attempt: job.attemptOf(task.index),
      signal,
    });
  } catch (error) {
    return { ok: false, error: toTaskError(signal.aborted ? signal.reason : error) };
  }
}

/**
 * The record of a finished task. Work that completed is kept even if a cancel or shutdown arrived
 * meanwhile; a task stopped by a cancel is `cancelled`, whatever its pool made of the abort.
 */
export function toRecord(job: Job, task: { index: number; label: string | undefined }, startedAt: Date, finishedAt: Date, aborted: boolean, result: TaskResult): TaskRecord {
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
  if (state === 'cancelled') record.error = { code: 'CANCELLED', message: 'Cancelled while running; its process was stopped.' };
  else if (result.error) record.error = result.error;
  if (result.files) record.files = result.files;
  return record;
}
