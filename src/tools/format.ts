import type { RunningProgress } from '../engine/progress.js';
import type { JobSnapshot, TaskRecord } from '../engine/types.js';

/** Tool output is measured in characters; ≈4 characters make a token for the client's budget. */
export const CHARS_PER_TOKEN = 4;

/**
 * A duration as every text of monitor-mcp says it (tools, `monitor-mcp jobs`, the demo): "850 ms",
 * "17.2 s", "1 min 29 s", "3 h 5 min", "4 days". The dashboard's page has a copy (web/format.js;
 * test/tools/format-duration.test.ts checks they agree). Rounded first, so never "60.0 s" or "1 min 60 s".
 */
export function formatDuration(ms: number): string {
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  const minutes = Math.round(ms / 60_000);
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} days`;
}

export function formatAge(iso: string, now: number): string {
  return `${formatDuration(Math.max(0, now - Date.parse(iso)))} ago`;
}

/** One line a job: what it is, where it stands, and what it cost. */
export function describeJob(job: JobSnapshot): string {
  const c = job.counts;
  const finished = c.succeeded + c.failed + c.cancelled + c.interrupted;
  const parts = [`${c.succeeded} succeeded`];
  if (c.failed) parts.push(`${c.failed} failed`);
  if (c.cancelled) parts.push(`${c.cancelled} cancelled`);
  if (c.interrupted) parts.push(`${c.interrupted} interrupted`);
  if (c.running) parts.push(`${c.running} running`);
  if (c.queued) parts.push(`${c.queued} queued`);
  // A reduce's 0/1 says nothing while its map runs: the tasks before it come first.
  const up =
    job.waiting && job.upstreamTasks ? `upstream ${job.upstreamTasks.done}/${job.upstreamTasks.total} done, then ` : '';
  let line = `${job.id} [${job.kind}${job.label ? `: ${job.label}` : ''}] ${job.state} — ${up}${finished}/${c.total} done (${parts.join(', ')}); ${formatDuration(job.elapsedMs)}, concurrency ${job.concurrency}${job.peakRunning > 0 ? ` (peak ${job.peakRunning} at once)` : ''}`;
  if (job.ownerPid !== undefined) line += `; run by another monitor-mcp process (pid ${job.ownerPid})`;
  if (job.after)
    line += `; ${job.after.mode === 'all' ? 'runs on all the results of' : 'each task runs on its task of'} ${job.after.job}${job.waiting ? ` (${job.waiting} waiting for it)` : ''}`;
  if (job.feeds) line += `; feeds ${job.feeds.join(', ')}`;
  if (job.warning !== undefined) line += `; WARNING: ${job.warning}`;
  if (job.totals) line += `; ${job.totals.text}`;
  const next = jobNext(job);
  if (next) line += `. ${next}`;
  return line;
}

/**
 * Tasks done and in all over some jobs; a later stage counts the tasks of the stages before it too
 * (a reduce's map), unless its upstream is one of the jobs: the pipeline's, from start to end.
 */
export function tasksDone(snapshots: readonly JobSnapshot[]): { done: number; total: number } {
  const ids = new Set(snapshots.map((s) => s.id));
  let done = 0;
  let total = 0;
  for (const s of snapshots) {
    total += s.counts.total;
    done += s.counts.total - s.counts.queued - s.counts.running;
    if (s.upstreamTasks && s.after && !ids.has(s.after.job)) {
      total += s.upstreamTasks.total;
      done += s.upstreamTasks.done;
    }
  }
  return { done, total };
}

/** `collect_results with {"job_ids":["job_…"]}`: a call the model can make as written. */
export function call(tool: string, args: Record<string, unknown>): string {
  return `${tool} with ${JSON.stringify(args)}`;
}

/**
 * What a suggested collect_results call without wait_seconds waits (the server's default), and
 * how to wait longer: the text must match the call as written.
 */
export function waitNote(limits: { defaultWaitSeconds: number; maxWaitSeconds: number }, what: string): string {
  const { defaultWaitSeconds: wait, maxWaitSeconds: max } = limits;
  const longer = `"wait_seconds": ${max} waits up to ${max} s`;
  if (wait > 0) return `it waits up to ${wait} s for ${what} to finish${max > wait ? ` (${longer})` : ''}`;
  return max > 0 ? `it answers at once (${longer} for ${what} to finish)` : 'it answers at once';
}

/** What a job needs from the caller, when it needs anything: its interrupted tasks resumed. */
export function jobNext(job: JobSnapshot): string | undefined {
  if (job.counts.interrupted === 0 || job.ownerPid !== undefined) return undefined;
  return `${job.counts.interrupted} task(s) were interrupted by a server restart: call ${call('resume_job', { job_id: job.id })} to run them again.`;
}

/** The JSON view of a job snapshot used in structured results. */
export function jobView(job: JobSnapshot): Record<string, unknown> {
  const view: Record<string, unknown> = {
    job_id: job.id,
    kind: job.kind,
    state: job.state,
    counts: job.counts,
    created_at: job.createdAt,
    elapsed_ms: job.elapsedMs,
    concurrency: job.concurrency,
    peak_running: job.peakRunning,
  };
  if (job.label) view.label = job.label;
  if (job.warning) view.warning = job.warning;
  if (job.finishedAt) view.finished_at = job.finishedAt;
  if (job.ownerPid !== undefined) view.run_by_other_server_pid = job.ownerPid;
  if (job.after) view.runs_on = { job_id: job.after.job, each: job.after.mode === 'each' };
  if (job.feeds) view.feeds = job.feeds;
  if (job.waiting) view.waiting_for_upstream = job.waiting;
  if (job.waiting && job.upstreamTasks) view.upstream_tasks = job.upstreamTasks;
  // The kind's own totals (e.g. tokens of an LLM job).
  if (job.totals) Object.assign(view, job.totals.fields);
  const next = jobNext(job);
  if (next) view.next = next;
  return view;
}

/** Running tasks' notes shown per job: enough to see what they wait on, not a list of all. */
const NOTES_SHOWN = 5;

/**
 * The jobs' views, each with what its running tasks wait on now (TaskContext.note: "no tokens from
 * gpu1 for 12 s") as `notes`; and those notes as status lines.
 */
export function liveViews(
  snapshots: readonly JobSnapshot[],
  running: readonly RunningProgress[],
): { views: Array<Record<string, unknown>>; lines: string[] } {
  const lines: string[] = [];
  const views = snapshots.map((snapshot) => {
    const view = jobView(snapshot);
    const noted = running.filter((task) => task.jobId === snapshot.id && task.note !== undefined);
    if (noted.length === 0) return view;
    const notes = noted.slice(0, NOTES_SHOWN).map((task) => `task ${task.index}: ${task.note ?? ''}`);
    if (noted.length > NOTES_SHOWN) notes.push(`and ${noted.length - NOTES_SHOWN} more task(s)`);
    view.notes = notes;
    lines.push(`${snapshot.id} now: ${notes.join('; ')}`);
    return view;
  });
  return { views, lines };
}

/** One result as shown to the model. */
export function resultView(jobId: string | undefined, record: TaskRecord): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  if (jobId !== undefined) view.job_id = jobId;
  view.index = record.index;
  if (record.label !== undefined) view.id = record.label;
  view.state = record.state;
  if (record.durationMs !== undefined) view.duration_ms = record.durationMs;
  if (record.attempt > 1) view.attempt = record.attempt;
  if (record.error) view.error = record.error;
  if (record.value !== undefined) view.value = record.value;
  if (record.files) view.files = record.files;
  return view;
}

const CUT_NOTE = '…[cut to fit the page; the full output is in `files`]';

/**
 * Makes one result fit `maxChars` of JSON by cutting its largest strings (and stringifying large
 * JSON values first). Returns the view untouched when it already fits.
 */
export function shrinkToFit(view: Record<string, unknown>, maxChars: number): Record<string, unknown> {
  let text = JSON.stringify(view);
  if (text.length <= maxChars) return view;
  const copy = structuredClone(view);
  const value = copy.value;
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    if (record.json !== undefined && typeof record.json !== 'string') record.json = JSON.stringify(record.json);
  }
  for (let round = 0; round < 16 && text.length > maxChars; round++) {
    const excess = text.length - maxChars;
    const longest = findLongestString(copy);
    if (!longest || longest.length < 64) break;
    const keep = Math.max(32, longest.length - excess - CUT_NOTE.length - 16);
    longest.set(longest.value.slice(0, keep) + CUT_NOTE);
    text = JSON.stringify(copy);
  }
  // Many small fields can still overflow: then the value goes, the file paths stay.
  if (text.length > maxChars)
    copy.value = { cut: true, note: 'Too large for one page; the full output is in `files`.' };
  return copy;
}

interface StringSlot {
  value: string;
  length: number;
  set(next: string): void;
}

function findLongestString(node: unknown): StringSlot | undefined {
  let best: StringSlot | undefined;
  const visit = (container: Record<string, unknown> | unknown[]): void => {
    const entries: Array<[string | number, unknown]> = Array.isArray(container)
      ? container.map((v, i) => [i, v])
      : Object.entries(container);
    for (const [key, child] of entries) {
      // File paths are how the model reaches the full output: never cut them.
      if (key === 'files') continue;
      if (typeof child === 'string') {
        if (!best || child.length > best.length) {
          best = {
            value: child,
            length: child.length,
            set: (next) => {
              (container as Record<string | number, unknown>)[key] = next;
            },
          };
        }
      } else if (child && typeof child === 'object') visit(child as Record<string, unknown>);
    }
  };
  if (node && typeof node === 'object') visit(node as Record<string, unknown>);
  return best;
}

/** `a`, `a or b`, `a, b or c`. */
export function orList(names: readonly string[]): string {
  return names.length <= 1 ? (names[0] ?? '') : `${names.slice(0, -1).join(', ')} or ${names.at(-1) ?? ''}`;
}
