import type { TaskError } from '../errors.js';

export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';
export const FINAL_TASK_STATES: readonly TaskState[] = ['succeeded', 'failed', 'cancelled', 'interrupted'];

/** Everything a pool needs to run one task. Pools are stateless per job: options + input say it all. */
export interface TaskContext {
  jobId: string;
  index: number;
  /** The task's own input, exactly as submitted (JSON). */
  input: unknown;
  /** The job's options, shared by all its tasks (JSON, as submitted by the tool). */
  options: unknown;
  /** A folder reserved for this job's full outputs; a pool names files after `index`. */
  outputDir: string;
  /** 1 on the first run; resumed tasks count on. */
  attempt: number;
  /** Aborted on cancel, on timeout set by the engine's caller, or on shutdown. */
  signal: AbortSignal;
}

/**
 * What a pool returns. `value` is the JSON summary shown by collect_results (keep it small:
 * previews, not whole outputs). Full outputs go to files under outputDir, listed in `files`.
 */
export interface TaskResult {
  ok: boolean;
  value?: unknown;
  error?: TaskError;
  files?: Record<string, string>;
  /** Tokens processed by a local model, summed per job by collect_results. */
  usage?: { promptTokens: number; completionTokens: number };
}

/**
 * A kind of worker. The engine knows nothing else about it: a name, how many tasks of all jobs may
 * run at once, and how to run one. A pool throws only for bugs; expected failures come back as
 * `{ ok: false, error }` (a thrown MonitorError is recorded the same way).
 */
export interface Pool {
  readonly kind: string;
  readonly concurrency: number;
  /**
   * Tasks handed over per unit of a job's concurrency (default 1). A pool that enforces the job's
   * limit itself (the LLM router) takes 2, so a freed slot is refilled at once.
   */
  readonly prefetch?: number;
  run(task: TaskContext): Promise<TaskResult>;
  /** Optional one-off work before a job's first task runs (e.g. load an LLM once). */
  prepareJob?(job: { jobId: string; options: unknown; signal: AbortSignal }): Promise<void>;
  /** Optional clean-up on start of what an earlier server left behind (e.g. orphaned workers); never throws. */
  recover?(): Promise<void>;
}

/** One finished task as stored (one line of results.jsonl). */
export interface TaskRecord {
  index: number;
  state: 'succeeded' | 'failed' | 'cancelled';
  attempt: number;
  startedAt?: string;
  finishedAt: string;
  durationMs?: number;
  value?: unknown;
  error?: TaskError;
  files?: Record<string, string>;
  usage?: { promptTokens: number; completionTokens: number };
}

export interface JobMeta {
  id: string;
  kind: string;
  label?: string;
  createdAt: string;
  finishedAt?: string;
  cancelledAt?: string;
  taskCount: number;
  concurrency: number;
  options: unknown;
  /** Most tasks that ran at once, saved when the job finishes. */
  peakRunning?: number;
  /** The server process running the job; another live server on the same state dir leaves it alone. */
  ownerPid?: number;
  /** The owner's start time, so a reused pid (after a reboot) is not taken for it. */
  ownerStart?: string;
}

export interface JobCounts {
  total: number;
  queued: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  interrupted: number;
}

export interface JobSnapshot {
  id: string;
  kind: string;
  label?: string;
  state: JobState;
  createdAt: string;
  finishedAt?: string;
  concurrency: number;
  counts: JobCounts;
  /** Wall time so far (or until finished), in ms. */
  elapsedMs: number;
  /** Most tasks seen running at once in this process's lifetime. */
  peakRunning: number;
  /** Set when another live server process runs this job; its counts are read from disk. */
  ownerPid?: number;
  /** Something the user should know about the job's storage (e.g. a result that could not be saved). */
  warning?: string;
  usage: { promptTokens: number; completionTokens: number };
}
