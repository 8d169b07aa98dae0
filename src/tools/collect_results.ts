import * as z from 'zod';
import type { JobSnapshot, TaskRecord } from '../engine/types.js';
import { CHARS_PER_TOKEN, describeJob, jobView, orList, resultView, shrinkToFit } from './format.js';
import { decodeCursor, encodeCursor, type PageEntry, pageResults, type ResultFilter } from './paging.js';
import { defineTool, type ServerFacts, type ToolContext, type ToolReply } from './tool.js';

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

/** One result on a page: what identifies it, and (in merge modes) its output apart. */
interface Shown {
  item: Record<string, unknown>;
  piece: unknown;
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

const sizeOf = (value: unknown): number => (typeof value === 'string' ? value.length : JSON.stringify(value).length) + 24;

/**
 * How a merge mode puts results on a page. The reply carries each result twice (text for the
 * model, structuredContent for programs), so both count against the budget.
 */
function renderer(merge: MergeMode, multi: boolean): { render(jobId: string, record: TaskRecord): PageEntry<Shown>; shrink(shown: PageEntry<Shown>, room: number): PageEntry<Shown> } {
  // In merge modes the outputs travel in `merged`; results keep only what identifies them.
  const extraOf = (item: Record<string, unknown>): number => (merge === 'list' ? 0 : sizeOf(item));
  return {
    render(jobId, record) {
      const full = resultView(multi ? jobId : undefined, record);
      if (merge === 'list') return { entry: { item: full, piece: full }, cost: 2 * sizeOf(full) };
      const item = leanView(full);
      const piece = mergedPiece(record, merge);
      return { entry: { item, piece }, cost: 2 * sizeOf(piece) + extraOf(item) };
    },
    shrink({ entry }, left) {
      const extra = extraOf(entry.item);
      const room = Math.max(256, Math.floor((left - extra) / 2) - 24);
      if (merge === 'list') {
        const shrunk = shrinkToFit(entry.item, room);
        return { entry: { item: shrunk, piece: shrunk }, cost: 2 * sizeOf(shrunk) };
      }
      const piece = shrinkPiece(entry.piece, room);
      return { entry: { item: entry.item, piece }, cost: 2 * sizeOf(piece) + extra };
    },
  };
}

/**
 * Waits (bounded), then renders status lines for every job and one page of results that fits the
 * budget, in the order tasks finished; the cursor continues exactly where the page stopped, so new
 * results of a running job appear on later calls and nothing is shown twice.
 */
export async function collect(ctx: ToolContext<unknown>, request: CollectRequest): Promise<ToolReply> {
  const { engine } = ctx;
  await engine.refresh(request.jobIds);
  for (const id of request.jobIds) engine.snapshotOf(id);
  const offsets = request.cursor ? decodeCursor(request.cursor, request.jobIds) : (request.startOffsets ?? request.jobIds.map(() => 0));
  await waitWithProgress(ctx, request);

  await engine.refresh(request.jobIds);
  const snapshots = request.jobIds.map((id) => engine.snapshotOf(id));
  const budgetChars = request.budgetTokens * CHARS_PER_TOKEN;
  const header = fitHeader(snapshots, budgetChars * 0.3);
  const jobViews = snapshots.map(jobView);
  const used = header.join('\n').length + JSON.stringify(jobViews).length + 600;
  const multi = request.jobIds.length > 1;
  const jobs = await Promise.all(request.jobIds.map(async (id) => ({ id, records: await engine.results(id) })));
  const page = pageResults({ jobs, offsets, filter: request.filter, room: budgetChars - used, ...renderer(request.merge, multi) });

  const allDone = snapshots.every((s) => s.counts.queued === 0 && s.counts.running === 0);
  const items = page.entries.map((shown) => shown.item);
  const pieces = page.entries.map((shown) => shown.piece);
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
  const nextCursor = page.cut || !allDone ? encodeCursor(page.offsets, request.jobIds) : undefined;
  if (page.cut) {
    lines.push(`${page.remaining} more result(s) available: call collect_results again with the same job_ids and cursor "${nextCursor ?? ''}".`);
  } else if (nextCursor) {
    lines.push(`Jobs still running. Keep working, then call collect_results with the same job_ids and cursor "${nextCursor}" to get only the results that finish after these.`);
  }
  const structured: Record<string, unknown> = { jobs: jobViews, done: allDone, results: items };
  if (request.merge !== 'list') structured.merged = request.merge === 'json' ? pieces : pieces.join('\n');
  if (nextCursor) {
    structured.next_cursor = nextCursor;
    structured.more_now = page.cut;
  }
  return { text: lines.join('\n'), structured };
}

/** Waits for the jobs (bounded), sending progress as tasks finish and a heartbeat while none do. */
async function waitWithProgress(ctx: ToolContext<unknown>, request: CollectRequest): Promise<void> {
  const { engine } = ctx;
  let lastProgress = 0;
  const report = (): void => {
    const now = Date.now();
    if (now - lastProgress < 250) return;
    lastProgress = now;
    let done = 0;
    let total = 0;
    for (const id of request.jobIds) {
      const c = engine.snapshotOf(id).counts;
      total += c.total;
      done += c.total - c.queued - c.running;
    }
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

export function collectResultsTool(facts: ServerFacts) {
  return defineTool({
    name: 'collect_results',
    title: 'Collect job results',
    description: [
      'Waits for one or more jobs (at most wait_seconds, bounded so the call never outlives the client), then returns each job\'s status counts and one page of finished results, in the order they finished, kept within an output budget.',
      'Each result has the task index, state, duration, the worker\'s output (parsed JSON when it printed JSON) and, for large outputs, the path of the file holding all of it.',
      'If more results exist the reply ends with a cursor: call again with the same job_ids and that cursor to page on. While jobs run, the reply gives a cursor that returns only results finishing later.',
      'Use filter "failed" to inspect only failures; merge "text" or "json" to get the outputs concatenated or as one JSON array ready to merge.',
    ].join(' '),
    inputSchema: {
      job_ids: z.array(z.string().min(1)).min(1).max(50).describe(`Job ids returned by ${orList(facts.dispatchTools)} (or listed by list_jobs).`),
      wait_seconds: z.number().min(0).optional().describe('How long to wait for the jobs to finish before answering with what is done. Default about 20 s; capped by the server (about 50 s). 0 = answer at once.'),
      cursor: z.string().optional().describe('The next_cursor of a previous call with the same job_ids, to continue where it stopped.'),
      filter: z.enum(['all', 'failed', 'succeeded']).optional().describe('Which results to include: all (default), failed (also cancelled), or succeeded.'),
      merge: z.enum(['list', 'text', 'json']).optional().describe('list (default): one JSON line per result with state, timing and files. text: outputs concatenated with separators. json: one JSON array of the outputs (parsed JSON where the worker printed JSON).'),
      budget_tokens: z.number().int().min(200).optional().describe('Page size in tokens (≈4 characters each). Default about 8,000; capped at the server maximum (25,000, Claude Code\'s limit).'),
    },
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async handler(args, ctx) {
      const { collect: limits } = ctx.config;
      const request: CollectRequest = {
        jobIds: [...new Set(args.job_ids)],
        waitSeconds: Math.min(args.wait_seconds ?? limits.defaultWaitSeconds, limits.maxWaitSeconds),
        filter: args.filter ?? 'all',
        merge: args.merge ?? 'list',
        budgetTokens: Math.min(args.budget_tokens ?? limits.defaultBudgetTokens, limits.maxBudgetTokens),
      };
      if (args.cursor !== undefined) request.cursor = args.cursor;
      return collect(ctx, request);
    },
  });
}
