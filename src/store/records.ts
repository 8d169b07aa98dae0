import * as z from 'zod';
import type { TaskError } from '../errors.js';
import { StateLayout } from './layout.js';

/*
 * What the state directory holds, as plain JSON, with the zod schema each is checked against when
 * read: `job.json` is a JobMeta, each line of `results.jsonl` a TaskRecord, `owner.<N>` a Claim,
 * `live/<pid>.json` a LiveFile. The store reads and writes them; the engine gives them meaning.
 */

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

export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

/** How many of a job's tasks are in each state. */
export interface JobCounts {
  total: number;
  queued: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  interrupted: number;
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
  /** The job's options as its kind's planner made them (JSON; absent when it made none); shared by all its tasks. */
  options?: unknown;
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

/** Who owns a job: the server (pid and start time) that took its latest generation. */
export interface Claim {
  generation: number;
  pid: number;
  start?: string;
}

/**
 * A job whose files do not hold what they should: left out of every count, shown as `damaged`
 * with the file and why. A server that is about to own it moves the file aside (`moved_to`) and
 * leaves a note (damaged.json) so that every reader finds it damaged from then on.
 */
export interface DamagedJob {
  id: string;
  /** The file (or the job's folder) that failed. */
  path: string;
  reason: string;
  /** Where the file was moved (quarantined) to, beside it in the job's folder. */
  moved_to?: string;
  /** When it was quarantined. */
  at?: string;
}

export const damagedNoteSchema: z.ZodType<Omit<DamagedJob, 'id'>> = z.object({
  path: z.string(),
  reason: z.string(),
  moved_to: z.string().optional(),
  at: z.string().optional(),
});

/** What a running server publishes for the dashboard and `monitor-mcp jobs` (`live/<pid>.json`). */
export interface LiveFile {
  pid: number;
  start?: string;
  version: string;
  started_at: string;
  heartbeat_at: string;
  /** Each kind's live figures (the LLM endpoints: slots busy, queue, tokens/s). */
  pools: Record<string, unknown>;
  /** The last progress of the server's running tasks that report any (at most LIVE_PROGRESS.tasks). */
  tasks?: LiveTaskProgress[];
}

/** What a running task has done so far, as a live file carries it (the engine's TaskProgress, bounded). */
export interface ProgressView {
  summary: string;
  figures?: Record<string, number | string>;
  /** A JSONL file in the job's output folder (absolute, or relative to that folder). */
  transcript?: string;
}

/** One running task's progress in a live file. */
export interface LiveTaskProgress extends ProgressView {
  job_id: string;
  index: number;
  updated_at: string;
}

/** How much of running tasks' progress a live file may hold, and any reader keeps of it. */
export const LIVE_PROGRESS = { tasks: 64, summary: 200, figures: 8, figureKey: 40, figureText: 120, path: 4096 };

/** Each task's latest record, in task order (records come in finish order: a later attempt comes later). */
export function latestRecords(records: readonly TaskRecord[]): TaskRecord[] {
  const latest = new Map<number, TaskRecord>();
  for (const record of records) latest.set(record.index, record);
  return [...latest.values()].sort((a, b) => a.index - b.index);
}

const count = z.number().int().nonnegative();
/** A time every reader can compute with (elapsed times, retention). */
const isoTime = z.string().refine((text) => Number.isFinite(Date.parse(text)), 'not a date');
/** Past any kind's task cap by far; a job.json saying more is damaged (not an array of a billion tasks). */
export const MAX_JOB_TASKS = 10_000_000;

// Typed as the interfaces above, so a field added to one and not the other does not compile.
export const jobMetaSchema: z.ZodType<JobMeta> = z.object({
  id: z.string().min(1),
  kind: z.string().min(1),
  label: z.string().optional(),
  createdAt: isoTime,
  finishedAt: isoTime.optional(),
  cancelledAt: isoTime.optional(),
  taskCount: count.max(MAX_JOB_TASKS),
  concurrency: z.number().int().positive().max(MAX_JOB_TASKS),
  options: z.unknown().optional(),
  peakRunning: count.optional(),
  ownerPid: z.number().int().optional(),
  ownerStart: z.string().optional(),
  ownerGeneration: count.optional(),
  after: z.object({ job: z.string(), mode: z.enum(['each', 'all']) }).optional(),
});

/** A value is the kind's to fill; only the envelope's fields have a type every reader relies on. */
const resultValueSchema: z.ZodType<ResultValue> = z.looseObject({
  text: z.string().optional(),
  json: z.unknown().optional(),
  cut: z.boolean().optional(),
});

export const taskRecordSchema: z.ZodType<TaskRecord> = z.object({
  index: count,
  state: z.enum(['succeeded', 'failed', 'cancelled']),
  attempt: count,
  startedAt: z.string().optional(),
  finishedAt: z.string(),
  durationMs: z.number().optional(),
  label: z.string().optional(),
  value: resultValueSchema.optional(),
  error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }).optional(),
  files: z.record(z.string(), z.string()).optional(),
});

/** An `owner.<N>` file holds the claim but its generation, which is in its name. */
export const ownerSchema: z.ZodType<Omit<Claim, 'generation'>> = z.object({
  pid: z.number().int(),
  start: z.string().optional(),
});

export const liveFileSchema: z.ZodType<LiveFile> = z.object({
  pid: z.number().int(),
  start: z.string().optional(),
  version: z.string(),
  started_at: z.string(),
  heartbeat_at: z.string(),
  pools: z.record(z.string(), z.unknown()),
  // Each entry checked on its own: one bad entry (another version's, a hostile one) is left out, not the server.
  tasks: z
    .array(z.unknown())
    .optional()
    .transform((raw) => raw?.slice(0, LIVE_PROGRESS.tasks).flatMap((entry) => liveTaskOf(entry) ?? [])),
});

/** A task's progress cut to LIVE_PROGRESS; undefined unless it has a summary. Never throws. */
export function boundedProgress(raw: unknown): ProgressView | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const { summary, figures, transcript } = raw as Record<string, unknown>;
  if (typeof summary !== 'string') return undefined;
  const view: ProgressView = { summary: summary.slice(0, LIVE_PROGRESS.summary) };
  if (figures !== null && typeof figures === 'object' && !Array.isArray(figures)) {
    const kept: Record<string, number | string> = {};
    for (const [key, value] of Object.entries(figures).slice(0, LIVE_PROGRESS.figures)) {
      const name = key.slice(0, LIVE_PROGRESS.figureKey);
      if (typeof value === 'number' && Number.isFinite(value)) kept[name] = value;
      else if (typeof value === 'string') kept[name] = value.slice(0, LIVE_PROGRESS.figureText);
    }
    view.figures = kept;
  }
  // A path cut short would name another file: too long is none.
  if (typeof transcript === 'string' && transcript.length > 0 && transcript.length <= LIVE_PROGRESS.path)
    view.transcript = transcript;
  return view;
}

function liveTaskOf(raw: unknown): LiveTaskProgress | undefined {
  const view = boundedProgress(raw);
  if (!view) return undefined;
  const { job_id: jobId, index, updated_at: updatedAt } = raw as Record<string, unknown>;
  if (typeof jobId !== 'string' || !StateLayout.isJobId(jobId)) return undefined;
  if (!Number.isSafeInteger(index) || (index as number) < 0 || typeof updatedAt !== 'string') return undefined;
  return { job_id: jobId, index: index as number, updated_at: updatedAt.slice(0, 40), ...view };
}

/**
 * A file of the state directory that does not hold what it should (a bad line of it, when `line`
 * is set): says which and why, instead of a crash deep in whatever read it. The seam for a later
 * quarantine of damaged jobs: every damaged record found on reading comes through here.
 */
export class DamagedRecordError extends Error {
  override readonly name = 'DamagedRecordError';
  readonly file: string;
  readonly line: number | undefined;
  readonly reason: string;

  constructor(file: string, reason: string, line?: number) {
    super(`${file}${line === undefined ? '' : ` line ${line}`} is damaged: ${reason}`);
    this.file = file;
    this.line = line;
    this.reason = reason;
  }
}

/** Parses and checks one record read from `file` (its line `line`); throws DamagedRecordError. */
export function parseRecord<T>(schema: z.ZodType<T>, text: string, file: string, line?: number): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new DamagedRecordError(file, `not JSON (${error instanceof Error ? error.message : String(error)})`, line);
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.join('.') || 'the record'}: ${issue.message}`)
    .join('; ');
  throw new DamagedRecordError(file, issues, line);
}
