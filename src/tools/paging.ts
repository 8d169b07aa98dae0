import type { JobSnapshot, TaskRecord } from '../engine/types.js';
import { MonitorError } from '../errors.js';
import { unverifiedNote } from '../store/result.js';
import { call, jobNext, tasksDone, waitNote } from './format.js';

export { unverifiedNote };

export type ResultFilter = 'all' | 'failed' | 'succeeded' | 'unverified';

export type MergeMode = 'list' | 'text' | 'json';

export interface CollectRequest {
  jobIds: string[];
  waitSeconds: number;
  cursor?: string;
  filter: ResultFilter;
  merge: MergeMode;
  budgetTokens: number;
  /** The caller chose budgetTokens: the calls `next` suggests keep it. */
  budgetAsked?: boolean;
  /** Also earlier attempts of tasks that ran again (by default a task's latest attempt is its result). */
  allAttempts?: boolean;
  /** Start after these many finished-order records per job (instead of a cursor). */
  startOffsets?: number[];
}

const CURSOR_PREFIX = 'c2.';

/**
 * A cursor marks, per job of a request, how many of its finished-order records were shown. One
 * cursor serves both paging (more is ready now) and polling (only what finishes later).
 */
export function encodeCursor(offsets: readonly number[], jobIds: readonly string[]): string {
  return CURSOR_PREFIX + Buffer.from(JSON.stringify({ o: offsets, ids: jobIds.join(',') })).toString('base64url');
}

/** The offsets of a cursor that collect_results gave for exactly these job ids (in this order). */
export function decodeCursor(text: string, jobIds: readonly string[]): number[] {
  const bad = new MonitorError(
    'INVALID_INPUT',
    `The cursor "${text.slice(0, 40)}" is not one collect_results gave for these job_ids.`,
    {
      hint: 'Pass the next_cursor from the previous collect_results call with the same job_ids (same order), or omit cursor to start from the first result.',
    },
  );
  if (!text.startsWith(CURSOR_PREFIX)) throw bad;
  let parsed: { o?: unknown; ids?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(text.slice(CURSOR_PREFIX.length), 'base64url').toString('utf8')) as {
      o?: unknown;
      ids?: unknown;
    };
  } catch {
    throw bad;
  }
  const offsets = parsed.o;
  if (parsed.ids !== jobIds.join(',') || !Array.isArray(offsets) || offsets.length !== jobIds.length) throw bad;
  if (!offsets.every((n): n is number => Number.isInteger(n) && Number(n) >= 0)) throw bad;
  return offsets;
}

export function matchesFilter(record: TaskRecord, filter: ResultFilter): boolean {
  if (filter === 'all') return true;
  if (filter === 'succeeded') return record.state === 'succeeded';
  if (filter === 'unverified') return record.state === 'succeeded' && unverifiedNote(record) !== undefined;
  return record.state !== 'succeeded';
}

/** One result as a page shows it, and what it costs there (in characters). */
export interface PageEntry<E> {
  entry: E;
  cost: number;
}

export interface PageInput<E> {
  /** Each job of the request with its records in finish order, and those not to show (earlier attempts). */
  jobs: ReadonlyArray<{
    id: string;
    records: readonly TaskRecord[];
    hidden?: (record: TaskRecord, at: number) => boolean;
  }>;
  /** Per job, how many of its records earlier pages showed. */
  offsets: readonly number[];
  filter: ResultFilter;
  /** Characters the results may take on this page. */
  room: number;
  render(jobId: string, record: TaskRecord): PageEntry<E>;
  /** A result larger than the whole page, cut to fit `room`: it is cut, never skipped. */
  shrink(entry: PageEntry<E>, room: number): PageEntry<E>;
}

export interface Page<E> {
  entries: E[];
  /** Where the next page starts, per job. */
  offsets: number[];
  /** True when results are left that did not fit. */
  cut: boolean;
  /** How many matching results are left after this page. */
  remaining: number;
  /** Characters the entries take. */
  used: number;
}

/**
 * One page of results in the order they finished, job after job, as many as fit `room`. Pure:
 * the records come in, nothing is read or written.
 */
export function pageResults<E>(input: PageInput<E>): Page<E> {
  const entries: E[] = [];
  const offsets = [...input.offsets];
  let used = 0;
  let cut = false;
  let remaining = 0;
  input.jobs.forEach(({ id, records, hidden }, j) => {
    const shows = (record: TaskRecord | undefined, at: number): record is TaskRecord =>
      record !== undefined && matchesFilter(record, input.filter) && !hidden?.(record, at);
    let at = offsets[j] ?? 0;
    if (cut) {
      remaining += countShown(records, at, shows);
      return;
    }
    for (; at < records.length; at++) {
      const record = records[at];
      if (!shows(record, at)) continue;
      let rendered = input.render(id, record);
      if (used + rendered.cost > input.room) {
        if (entries.length > 0) {
          cut = true;
          remaining += countShown(records, at, shows);
          break;
        }
        rendered = input.shrink(rendered, input.room - used);
      }
      used += rendered.cost;
      entries.push(rendered.entry);
    }
    offsets[j] = at;
  });
  return { entries, offsets, cut, remaining, used };
}

function countShown(
  records: readonly TaskRecord[],
  from: number,
  shows: (record: TaskRecord | undefined, at: number) => boolean,
): number {
  let n = 0;
  for (let at = from; at < records.length; at++) if (shows(records[at], at)) n++;
  return n;
}

/** A task as it is now: its state and the attempt it is on (the last one started). */
export interface TaskNow {
  state: string;
  attempt: number;
}

/**
 * Hides what is not a task's result any more: a record followed by a later one for the same task
 * (resumed or retried), and the record of a task queued again, or running a later attempt, now.
 * A record of the attempt running now is that run's result on its way in (on disk a moment before
 * the task counts as finished): hidden, a page would skip it for good.
 */
export function earlierAttempts(
  records: readonly TaskRecord[],
  now: (index: number) => TaskNow,
): (record: TaskRecord, at: number) => boolean {
  const latest = new Map<number, number>();
  records.forEach((record, at) => latest.set(record.index, at));
  return (record, at) => {
    if (latest.get(record.index) !== at) return true;
    const task = now(record.index);
    return task.state === 'queued' || (task.state === 'running' && record.attempt < task.attempt);
  };
}

/** The call to make after this page, with its exact arguments. */
export function nextStep(
  request: CollectRequest,
  snapshots: readonly JobSnapshot[],
  remaining: number,
  cursor: string | undefined,
  limits: { defaultWaitSeconds: number; maxWaitSeconds: number },
): string {
  // Every call suggested keeps what the caller chose for its pages.
  const collectWith = (args: Record<string, unknown>): string =>
    call('collect_results', {
      job_ids: request.jobIds,
      ...args,
      ...(request.merge === 'list' ? {} : { merge: request.merge }),
      ...(request.budgetAsked ? { budget_tokens: request.budgetTokens } : {}),
      ...(request.allAttempts ? { all_attempts: true } : {}),
    });
  const again: Record<string, unknown> = {};
  if (cursor) again.cursor = cursor;
  if (request.filter !== 'all') again.filter = request.filter;
  const running = snapshots.some((s) => s.counts.queued > 0 || s.counts.running > 0);
  // Ready results need no wait: without wait_seconds 0 the call would first wait for the running jobs.
  if (remaining > 0)
    return `${remaining} more result(s) are ready: call ${collectWith(running ? { ...again, wait_seconds: 0 } : again)} to see them.`;
  const { done: finished, total } = tasksDone(snapshots);
  if (cursor)
    return `The job(s) are still running (${finished}/${total} tasks done). Keep working on something else, then call ${collectWith(again)}: ${waitNote(limits, 'them')}, then returns only results newer than these.`;
  const steps = snapshots.map(jobNext).filter((step) => step !== undefined);
  const failing = snapshots.filter((s) => s.counts.failed > 0);
  const failed = failing.reduce((n, s) => n + s.counts.failed, 0);
  if (failed > 0 && request.filter !== 'failed') {
    const rerun = failing.map((s) => call('resume_job', { job_id: s.id, include_failed: true }));
    steps.push(
      `${failed} task(s) failed: ${collectWith({ filter: 'failed' })} shows only those; once the cause is fixed, ${rerun.join(', ')} runs them again.`,
    );
  }
  const unverified = snapshots.reduce((n, s) => n + unverifiedCount(s), 0);
  if (unverified > 0 && request.filter !== 'unverified')
    steps.push(
      `${unverified} answer(s) failed their checks and are kept unverified: ${collectWith({ filter: 'unverified' })} shows only those, each with its checks' reasons.`,
    );
  return steps.length > 0 ? steps.join(' ') : 'Every result has been shown; the job(s) are finished.';
}

/** A job's answers kept unverified, as its kind's totals count them (`verification`). */
function unverifiedCount(snapshot: JobSnapshot): number {
  const verification = snapshot.totals?.fields.verification as { unverified?: unknown } | undefined;
  return typeof verification?.unverified === 'number' ? verification.unverified : 0;
}
