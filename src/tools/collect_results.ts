import * as z from 'zod';
import type { JobSnapshot, TaskRecord } from '../engine/types.js';
import { MonitorError } from '../errors.js';
import { CHARS_PER_TOKEN, describeJob, jobView, resultView, shrinkToFit } from './format.js';
import { defineTool, type ToolContext, type ToolReply } from './tool.js';

export type ResultFilter = 'all' | 'failed' | 'succeeded';
export type MergeMode = 'list' | 'text' | 'json';

export interface CollectRequest {
  jobIds: string[];
  waitSeconds: number;
  cursor?: string;
  filter: ResultFilter;
  merge: MergeMode;
  budgetTokens: number;
  /** Start after these many finished-order records per job (instead of a cursor). */
  startOffsets?: number[];
}

/** Per job of the request: how many of its finished-order records were already shown. */
interface Cursor {
  offsets: number[];
}

const CURSOR_PREFIX = 'c2.';

function encodeCursor(cursor: Cursor, jobIds: readonly string[]): string {
  return CURSOR_PREFIX + Buffer.from(JSON.stringify({ o: cursor.offsets, ids: jobIds.join(',') })).toString('base64url');
}

function decodeCursor(text: string, jobIds: readonly string[]): Cursor {
  const bad = new MonitorError('INVALID_INPUT', `The cursor "${text.slice(0, 40)}" is not one collect_results gave for these job_ids.`, {
    hint: 'Pass the next_cursor from the previous collect_results call with the same job_ids (same order), or omit cursor to start from the first result.',
  });
  if (!text.startsWith(CURSOR_PREFIX)) throw bad;
  let parsed: { o?: unknown; ids?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(text.slice(CURSOR_PREFIX.length), 'base64url').toString('utf8')) as { o?: unknown; ids?: unknown };
  } catch {
    throw bad;
  }
  const offsets = parsed.o;
  if (parsed.ids !== jobIds.join(',') || !Array.isArray(offsets) || offsets.length !== jobIds.length) throw bad;
  if (!offsets.every((n): n is number => Number.isInteger(n) && Number(n) >= 0)) throw bad;
  return { offsets };
}

function matches(record: TaskRecord, filter: ResultFilter): boolean {
  if (filter === 'all') return true;
  if (filter === 'succeeded') return record.state === 'succeeded';
  return record.state !== 'succeeded';
}

/** The part of a result that a merge mode keeps. */
function mergedPiece(record: TaskRecord, merge: MergeMode): unknown {
  const value = record.value;
  const fields = value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  if (merge === 'text') {
    if (typeof fields?.text === 'string') return fields.text;
    if (fields?.json !== undefined) return JSON.stringify(fields.json, null, 2);
    return record.error ? `(${record.state}: ${record.error.code} ${record.error.message})` : JSON.stringify(value ?? null);
  }
  if (fields?.json !== undefined) return fields.json;
  if (typeof fields?.text === 'string') return fields.text;
  return record.error ? { error: record.error } : (value ?? null);
}

/**
 * Waits (bounded), then renders status lines for every job and one page of results that fits the
 * budget, in the order tasks finished; the cursor continues exactly where the page stopped, so new
 * results of a running job appear on later calls and nothing is shown twice.
 */
export async function collect(ctx: ToolContext, request: CollectRequest): Promise<ToolReply> {
  const { engine } = ctx;
  await engine.refresh(request.jobIds);
  for (const id of request.jobIds) engine.snapshotOf(id);
  const offsets = request.cursor ? decodeCursor(request.cursor, request.jobIds).offsets : (request.startOffsets ?? request.jobIds.map(() => 0));

  const progressTotal = (): { done: number; total: number } => {
    let done = 0;
    let total = 0;
    for (const id of request.jobIds) {
      const c = engine.snapshotOf(id).counts;
      total += c.total;
      done += c.total - c.queued - c.running;
    }
    return { done, total };
  };
  let lastProgress = 0;
  const report = (): void => {
    const now = Date.now();
    if (now - lastProgress < 250) return;
    lastProgress = now;
    const { done, total } = progressTotal();
    void ctx.progress(done, total, `${done}/${total} tasks done`).catch(() => undefined);
  };
  report();
  // A heartbeat while nothing finishes, so the client sees the wait is alive.
  const heartbeat = setInterval(() => {
    lastProgress = 0;
    report();
  }, 5000);
  try {
    await engine.waitFor(request.jobIds, request.waitSeconds * 1000, ctx.signal, report);
  } finally {
    clearInterval(heartbeat);
  }

  await engine.refresh(request.jobIds);
  const snapshots = request.jobIds.map((id) => engine.snapshotOf(id));
  const budgetChars = request.budgetTokens * CHARS_PER_TOKEN;
  const header = fitHeader(snapshots, budgetChars * 0.3);
  const jobViews = snapshots.map(jobView);
  // The reply carries each result twice (text for the model, structuredContent for programs), so
  // both count against the budget.
  let used = header.join('\n').length + JSON.stringify(jobViews).length + 600;
  const items: Array<Record<string, unknown>> = [];
  const pieces: unknown[] = [];
  let cut = false;
  let remaining = 0;
  const multi = request.jobIds.length > 1;
  const sizeOf = (value: unknown): number => (typeof value === 'string' ? value.length : JSON.stringify(value).length) + 24;

  for (let j = 0; j < request.jobIds.length; j++) {
    const id = request.jobIds[j] ?? '';
    const records = await engine.results(id);
    if (cut) {
      remaining += countRemaining(records, offsets[j] ?? 0, request.filter);
      continue;
    }
    let o = offsets[j] ?? 0;
    for (; o < records.length; o++) {
      const record = records[o];
      if (!record || !matches(record, request.filter)) continue;
      const full = resultView(multi ? id : undefined, record);
      // In merge modes the outputs travel in `merged`; results keep only what identifies them.
      const item = request.merge === 'list' ? full : leanView(full);
      let rendered: unknown = request.merge === 'list' ? full : mergedPiece(record, request.merge);
      const extra = request.merge === 'list' ? 0 : sizeOf(item);
      let cost = 2 * sizeOf(rendered) + extra;
      if (used + cost > budgetChars) {
        if (items.length > 0) {
          cut = true;
          remaining += countRemaining(records, o, request.filter);
          break;
        }
        // A single result larger than the whole page is cut, never skipped.
        const room = Math.max(256, Math.floor((budgetChars - used - extra) / 2) - 24);
        rendered = request.merge === 'list' ? shrinkToFit(full, room) : shrinkPiece(rendered, room);
        cost = 2 * sizeOf(rendered) + extra;
      }
      used += cost;
      items.push(request.merge === 'list' ? (rendered as Record<string, unknown>) : item);
      pieces.push(rendered);
    }
    offsets[j] = o;
  }

  const allDone = snapshots.every((s) => s.counts.queued === 0 && s.counts.running === 0);
  const lines: string[] = [...header];
  if (request.merge === 'list') {
    for (const piece of pieces) lines.push(JSON.stringify(piece));
  } else if (request.merge === 'text') {
    items.forEach((item, i) => {
      const piece = pieces[i];
      lines.push(`--- ${multi ? `${String(item.job_id)} ` : ''}#${String(item.index)} ${String(item.state)} ---`);
      lines.push(typeof piece === 'string' ? piece : JSON.stringify(piece));
    });
  } else {
    lines.push(JSON.stringify(pieces));
  }
  if (items.length === 0) {
    lines.push(allDone ? 'No results match on this page.' : 'No new results yet; the jobs are still running.');
  }
  // One cursor serves both paging and polling: it marks what this reply showed, per job.
  const nextCursor = cut || !allDone ? encodeCursor({ offsets }, request.jobIds) : undefined;
  if (cut) {
    lines.push(`${remaining} more result(s) available: call collect_results again with the same job_ids and cursor "${nextCursor ?? ''}".`);
  } else if (nextCursor) {
    lines.push(`Jobs still running. Keep working, then call collect_results with the same job_ids and cursor "${nextCursor}" to get only the results that finish after these.`);
  }
  const structured: Record<string, unknown> = {
    jobs: jobViews,
    done: allDone,
    results: items,
  };
  if (request.merge !== 'list') structured.merged = request.merge === 'json' ? pieces : pieces.join('\n');
  if (nextCursor) {
    structured.next_cursor = nextCursor;
    structured.more_now = cut;
  }
  return { text: lines.join('\n'), structured };
}

/** Status lines for as many jobs as fit a share of the page; the rest are summed up in one line. */
function fitHeader(snapshots: readonly JobSnapshot[], maxChars: number): string[] {
  const lines: string[] = [];
  let used = 0;
  for (const [i, snapshot] of snapshots.entries()) {
    const line = describeJob(snapshot);
    if (i > 0 && used + line.length > maxChars) {
      const rest = snapshots.slice(i);
      const done = rest.reduce((n, s) => n + s.counts.total - s.counts.queued - s.counts.running, 0);
      const total = rest.reduce((n, s) => n + s.counts.total, 0);
      lines.push(`…and ${rest.length} more job(s): ${done}/${total} tasks done (per-job counts in structuredContent.jobs, or collect fewer jobs at once).`);
      break;
    }
    lines.push(line);
    used += line.length + 1;
  }
  return lines;
}

function leanView(view: Record<string, unknown>): Record<string, unknown> {
  const rest = { ...view };
  delete rest.value;
  return rest;
}

function shrinkPiece(piece: unknown, room: number): unknown {
  const text = typeof piece === 'string' ? piece : JSON.stringify(piece);
  return text.length <= room ? piece : `${text.slice(0, Math.max(64, room - 80))}…[cut to fit the page; see list mode for the file path]`;
}

function countRemaining(records: readonly TaskRecord[], from: number, filter: ResultFilter): number {
  let n = 0;
  for (let i = from; i < records.length; i++) {
    const record = records[i];
    if (record && matches(record, filter)) n++;
  }
  return n;
}

/**
 * What every dispatch tool answers: the job handle at once, or — when the caller asked to wait —
 * the first page of results if the job finishes within `waitSeconds`.
 */
export async function dispatchReply(
  ctx: ToolContext,
  jobId: string,
  waitSeconds: number | undefined,
  options: { resumed?: number } = {},
): Promise<ToolReply> {
  const wait = Math.min(waitSeconds ?? 0, ctx.config.collect.maxWaitSeconds);
  const resumed = options.resumed !== undefined;
  if (wait > 0) {
    const request: CollectRequest = {
      jobIds: [jobId],
      waitSeconds: wait,
      filter: 'all',
      merge: 'list',
      budgetTokens: ctx.config.collect.defaultBudgetTokens,
    };
    // A resumed job's first page shows the new attempts, not the results collected before.
    if (resumed) request.startOffsets = [(await ctx.engine.results(jobId)).length];
    const reply = await collect(ctx, request);
    return { text: `job_id: ${jobId}\n${reply.text}`, structured: { job_id: jobId, ...reply.structured } };
  }
  const job: JobSnapshot = ctx.engine.snapshotOf(jobId);
  const text = [
    resumed
      ? `Resumed ${jobId}: ${options.resumed ?? 0} task(s) queued again, of kind ${job.kind}, up to ${job.concurrency} at once.`
      : `Submitted ${jobId}: ${job.counts.total} task(s) of kind ${job.kind}, up to ${job.concurrency} at once.`,
    `Keep working on something else; then call collect_results with job_ids ["${jobId}"] (it waits up to ${ctx.config.collect.maxWaitSeconds} s and pages the results). cancel_job stops it.`,
  ].join('\n');
  return { text, structured: { job_id: jobId, ...jobView(job) } };
}

/** The fields every dispatch tool takes, described once. */
export const dispatchFields = {
  label: z.string().max(200).optional().describe('A short name shown in list_jobs, e.g. "deps of src/".'),
  wait_seconds: z
    .number()
    .min(0)
    .optional()
    .describe('Wait up to this many seconds for the job and return its first page of results in this reply (default 0: return the job_id at once; capped by the server, about 50 s).'),
};

export const collectResultsTool = defineTool({
  name: 'collect_results',
  title: 'Collect job results',
  description: [
    'Waits for one or more jobs (at most wait_seconds, bounded so the call never outlives the client), then returns each job\'s status counts and one page of finished results, in the order they finished, kept within an output budget.',
    'Each result has the task index, state, duration, the worker\'s output (parsed JSON when it printed JSON) and, for large outputs, the path of the file holding all of it.',
    'If more results exist the reply ends with a cursor: call again with the same job_ids and that cursor to page on. While jobs run, the reply gives a cursor that returns only results finishing later.',
    'Use filter "failed" to inspect only failures; merge "text" or "json" to get the outputs concatenated or as one JSON array ready to merge.',
  ].join(' '),
  inputSchema: {
    job_ids: z.array(z.string().min(1)).min(1).max(50).describe('Job ids returned by run_script_batch, lmstudio_complete or http_batch (or listed by list_jobs).'),
    wait_seconds: z.number().min(0).optional().describe('How long to wait for the jobs to finish before answering with what is done. Default about 20 s; capped by the server (about 50 s). 0 = answer at once.'),
    cursor: z.string().optional().describe('The next_cursor of a previous call with the same job_ids, to continue where it stopped.'),
    filter: z.enum(['all', 'failed', 'succeeded']).optional().describe('Which results to include: all (default), failed (also cancelled), or succeeded.'),
    merge: z.enum(['list', 'text', 'json']).optional().describe('list (default): one JSON line per result with state, timing and files. text: outputs concatenated with separators. json: one JSON array of the outputs (parsed JSON where the worker printed JSON).'),
    budget_tokens: z.number().int().min(200).optional().describe('Page size in tokens (≈4 characters each). Default about 8,000; capped at the server maximum (25,000, Claude Code\'s limit).'),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const { collect: limits } = ctx.config;
    const ids = [...new Set(args.job_ids)];
    const request: CollectRequest = {
      jobIds: ids,
      waitSeconds: Math.min(args.wait_seconds ?? limits.defaultWaitSeconds, limits.maxWaitSeconds),
      filter: args.filter ?? 'all',
      merge: args.merge ?? 'list',
      budgetTokens: Math.min(args.budget_tokens ?? limits.defaultBudgetTokens, limits.maxBudgetTokens),
    };
    if (args.cursor !== undefined) request.cursor = args.cursor;
    return collect(ctx, request);
  },
});
