import type { TaskError } from '../errors.js';
import type {
  JobCounts,
  JobMeta,
  JobState,
  ResultEnvelope,
  ResultValue,
  TaskRecord,
  TaskState,
} from '../store/records.js';

export type { JobCounts, JobMeta, JobState, ResultEnvelope, ResultValue, TaskRecord, TaskState };

export const FINAL_TASK_STATES: readonly TaskState[] = ['succeeded', 'failed', 'cancelled', 'interrupted'];

/** Everything a pool needs to run one task. Pools are stateless per job: options + input say it all. */
export interface TaskContext {
  jobId: string;
  index: number;
  /** The task's own input, exactly as submitted (JSON). */
  input: unknown;
  /** The job's options, shared by all its tasks (JSON, as its kind's planner made them). */
  options: unknown;
  /** A folder reserved for this job's full outputs; a pool names files after `index`. */
  outputDir: string;
  /** 1 on the first run that reaches its worker; resumed tasks count on. */
  attempt: number;
  /**
   * The pool calls it once the task's work has really started (its worker process runs, its
   * request was handed over): only such runs count as attempts. Given only to pools that say
   * `reportsBegin`; calling it again in the same run changes nothing.
   */
  began?: () => void;
  /** Aborted on cancel, on timeout set by the engine's caller, or on shutdown. */
  signal: AbortSignal;
  /** For a later stage of a pipeline (JobMeta.after): what its task(s) upstream came to. */
  upstream?: UpstreamView;
  /**
   * Tells people what the running task has done so far (the engine provides it; a pool calls it
   * after each step). Cheap and never throws; only the last update is kept, until the task ends.
   */
  progress?: (update: TaskProgress) => void;
  /**
   * Says what the running task is waiting on now ("no tokens from gpu1 for 12 s"), shown before its
   * progress and apart in collect_results' job view, until taken back with undefined. Never throws.
   */
  note?: (text: string | undefined) => void;
}

/** What a running task has done so far, in a kind-neutral shape (an agent's steps, say). */
export interface TaskProgress {
  /** One line, e.g. "step 4 · grep /TODO/ in src · 3.1k tokens". */
  summary: string;
  /** A few figures: steps, tokens_in, tokens_out, last_tool… (numbers or short strings). */
  figures?: Record<string, number | string>;
  /** A JSONL file in the job's output folder that tells the task's story so far (shown on click). */
  transcript?: string;
}

/** The upstream results a later stage's task runs on: the one record of its `each` partner, or every task's latest (`all`). */
export interface UpstreamView {
  jobId: string;
  /** Where the upstream job's full outputs are (record.files name files there). */
  outputDir: string;
  records: readonly TaskRecord[];
}

/**
 * What a pool returns. `value` is the kind's own JSON summary shown by collect_results (keep it
 * small: previews, not whole outputs). Full outputs go to files under outputDir, listed in `files`.
 */
export interface TaskResult {
  ok: boolean;
  value?: ResultValue;
  error?: TaskError;
  files?: Record<string, string>;
}

/** A job's totals as shown with it: JSON fields for programs and a phrase for the status line. */
export interface TotalsView {
  fields: Record<string, unknown>;
  text: string;
}

/**
 * Running totals a kind keeps over a job's results (tokens processed, say), read from its own
 * result values. The engine folds each recorded value in and shows the view with the job, knowing
 * nothing of what is counted. Method syntax on purpose: a kind's own totals type stays assignable.
 */
export interface JobTotals<T> {
  add(totals: T | undefined, value: unknown): T | undefined;
  view(totals: T, elapsedMs: number): TotalsView | undefined;
}

/**
 * A kind of worker. The engine knows nothing else about it: a name, how many tasks of all jobs may
 * run at once, and how to run one. A pool throws only for bugs; expected failures come back as
 * `{ ok: false, error }` (a thrown MonitorError is recorded the same way).
 */
export interface Pool {
  readonly kind: string;
  /** Tasks of all its jobs running at once (each job also has its own limit, enforced by the engine). */
  readonly concurrency: number;
  /**
   * Optional: the pool's limit for the tasks of a job with these options, when not `concurrency`:
   * tasks that hold a slot only part of the time (an agent between its model requests) may be more.
   */
  concurrencyFor?(options: unknown): number;
  run(task: TaskContext): Promise<TaskResult>;
  /**
   * Optional: the pool calls each task's `began` when its work really starts, so a start that fails
   * before (its process could not start, a cancel while it waited) is no attempt. Without it, every
   * run the engine starts counts.
   */
  readonly reportsBegin?: boolean;
  /**
   * Optional, with runBatch: how many queued tasks of a job (given its options) one run may take
   * together; 1 runs them one by one through `run`. A batch holds ONE slot of the pool's limit and
   * of its job's, whatever its size: it is one unit of work for the pool (one process, say).
   */
  batchSize?(options: unknown): number;
  /**
   * Runs tasks of one job together (see batchSize); they share one signal. Returns one result per
   * task, in their order: each is recorded as its own. Like `run`, throws only for what fails them all.
   */
  runBatch?(tasks: readonly TaskContext[]): Promise<TaskResult[]>;
  /** Optional one-off work before a job's first task runs (e.g. load an LLM once). */
  prepareJob?(job: { jobId: string; options: unknown; signal: AbortSignal }): Promise<void>;
  /**
   * Optional: the job has no task queued or running any more (finished, or cancelled); what the pool
   * keeps for its tasks (warm worker processes) can go. A resumed job starts over. Never throws.
   */
  jobEnded?(jobId: string): void;
  /** Optional clean-up on start of what an earlier server left behind (e.g. orphaned workers); never throws. */
  recover?(): Promise<void>;
  /** What a task works on, in a few words (its file, prompt id, args or URL), kept with its result. */
  label?(input: unknown): string | undefined;
}

/** Who runs jobs (declared by the OS adapter that implements it, below the engine). */
export type { Ownership } from '../processes.js';

/** What a kind's planner makes of a tool call: the tasks and how to run them, ready to submit. */
export interface JobPlan {
  kind: string;
  /** One input per task (JSON); results keep these indices. */
  inputs: readonly unknown[];
  /** Shared by every task (JSON): stored with the job, so it runs the same after a restart. */
  options: unknown;
  /** Tasks of this job at once. */
  concurrency: number;
  /** A later stage of a pipeline: runs on the results of this job (see JobMeta.after). */
  after?: { job: string; mode: 'each' | 'all' };
  /** A stage to submit after this job, over all its results (a reduce). */
  then?: JobPlan;
}

export interface SubmitRequest extends Omit<JobPlan, 'then'> {
  label?: string;
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
  /** The kind's totals over the results so far, when it keeps any. */
  totals?: TotalsView;
  /** A pipeline's later stage: the job it runs on, and how (see JobMeta.after). */
  after?: { job: string; mode: 'each' | 'all' };
  /** The later stages that run on this job's results. */
  feeds?: string[];
  /** Tasks waiting for their input from the stage before (counted as queued). */
  waiting?: number;
  /** A later stage's: the tasks of the stages before it (a reduce's map), done and in all. */
  upstreamTasks?: { done: number; total: number };
}
