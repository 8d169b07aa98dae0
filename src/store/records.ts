import type { TaskError } from '../errors.js';

/**
 * What the state directory holds per job, as plain JSON: `job.json` is a JobMeta, each line of
 * `results.jsonl` a TaskRecord. The store reads and writes them; the engine gives them meaning.
 */
export interface JobMeta {
  id: string;
  kind: string;
  label?: string;
  createdAt: string;
  finishedAt?: string;
  cancelledAt?: string;
  taskCount: number;
  concurrency: number;
  /** The job's options as its kind's planner made them (JSON); shared by all its tasks. */
  options: unknown;
  /** Most tasks that ran at once, saved when the job finishes. */
  peakRunning?: number;
  /** The server process running the job; another live server on the same state dir leaves it alone. */
  ownerPid?: number;
  /** The owner's start time, so a reused pid (after a reboot) is not taken for it. */
  ownerStart?: string;
  /** Which of the job's owners (`owner.<N>`) wrote this metadata; a newer claim means a takeover in progress. */
  ownerGeneration?: number;
  /**
   * A later stage of a pipeline: its tasks run on the results of job `job`. `each`: task i waits
   * for task i of that job and gets its record; `all`: every task waits for the whole job to end
   * and gets all its records (a reduce).
   */
  after?: { job: string; mode: 'each' | 'all' };
}

/** Each task's latest record, in task order (records come in finish order: a later attempt comes later). */
export function latestRecords(records: readonly TaskRecord[]): TaskRecord[] {
  const latest = new Map<number, TaskRecord>();
  for (const record of records) latest.set(record.index, record);
  return [...latest.values()].sort((a, b) => a.index - b.index);
}

/** What every kind's result value holds the same way; the kind's own figures sit beside it. */
export interface ResultEnvelope {
  /** The output as text; when `cut`, only its start. Absent when `json` holds it. */
  text?: string;
  /** The output parsed as JSON, when it is JSON. */
  json?: unknown;
  /** `text` is only the start of a longer output; the whole output is the file `files.output`. */
  cut?: boolean;
}

/** A task's result value: the envelope, and the kind's own figures (tokens_in, exit_code, status…) beside it. */
export type ResultValue = ResultEnvelope & Record<string, unknown>;

/** One finished task (one line of results.jsonl). */
export interface TaskRecord {
  index: number;
  state: 'succeeded' | 'failed' | 'cancelled';
  attempt: number;
  startedAt?: string;
  finishedAt: string;
  durationMs?: number;
  /** What the task worked on, in a few words (its file, prompt id, args or URL): a result's provenance. */
  label?: string;
  /** The output (see ResultEnvelope; read it through store/result.ts) and the kind's own figures. */
  value?: ResultValue;
  error?: TaskError;
  /** Files under the job's out/ folder by role: `output` holds the whole output; others keep their names (stderr…). */
  files?: Record<string, string>;
}
