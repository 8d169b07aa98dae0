import type { TaskRecord } from '../engine/types.js';
import { MonitorError } from '../errors.js';
import { unverifiedNote } from '../store/result.js';

export { unverifiedNote };

export type ResultFilter = 'all' | 'failed' | 'succeeded' | 'unverified';

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
