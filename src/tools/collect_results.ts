import * as z from 'zod';
import type { JobSnapshot, TaskRecord } from '../engine/types.js';
import { latestRecords } from '../store/records.js';
import { envelopeOf, provenanceOf } from '../store/result.js';
import { call, CHARS_PER_TOKEN, describeJob, liveViews, resultView, shrinkToFit, tasksDone } from './format.js';
import {
  type CollectRequest,
  decodeCursor,
  earlierAttempts,
  encodeCursor,
  type MergeMode,
  nextStep,
  type PageEntry,
  pageResults,
  unverifiedNote,
} from './paging.js';
import { defineTool, type ToolContext, type ToolReply, withinLimit } from './tool.js';

export type { CollectRequest, MergeMode } from './paging.js';

/** The output a merge keeps of a result: its parsed JSON, else its text, else its error. */
function outputOf(record: TaskRecord, merge: MergeMode): { output: unknown } | { error: unknown } {
  if (record.error && record.state !== 'succeeded')
    return { error: { code: record.error.code, message: record.error.message } };
  const { json, text } = envelopeOf(record);
  if (json !== undefined) return { output: merge === 'text' ? JSON.stringify(json, null, 2) : json };
  if (text !== undefined) return { output: text };
  return { output: record.value ?? null };
}

const jsonSize = (value: unknown): number => JSON.stringify(value).length + 1;

/**
 * How a merge mode puts results on a page, and what each costs. The reply carries the page twice
 * (text for people, structuredContent for programs and Claude Code's model): a result costs what
 * its larger copy takes, so a page gives the model about the budget it asked for. In a merge mode
 * a result is its piece alone: what tells it apart (id, error, attempt, files) is in the piece,
 * not repeated in a list beside it.
 */
function renderer(
  merge: MergeMode,
  multi: boolean,
): {
  render(jobId: string, record: TaskRecord): PageEntry<unknown>;
  shrink(shown: PageEntry<unknown>, room: number): PageEntry<unknown>;
} {
  const cost = (piece: unknown): number => {
    if (merge !== 'text') return jsonSize(piece);
    const text = String(piece);
    return Math.max(text.length, JSON.stringify(text).length - 2) + 1;
  };
  const pieceOf = (jobId: string, record: TaskRecord): unknown => {
    const out = outputOf(record, merge);
    const unverified = unverifiedNote(record);
    const { attempt, files } = record;
    if (merge === 'json') {
      return {
        ...(multi ? { job_id: jobId } : {}),
        id: provenanceOf(record),
        ...(attempt > 1 ? { attempt } : {}),
        ...out,
        ...(unverified === undefined ? {} : { unverified }),
        ...(files ? { files } : {}),
      };
    }
    const body =
      'output' in out
        ? typeof out.output === 'string'
          ? out.output
          : JSON.stringify(out.output)
        : `(${record.state}: ${record.error?.code ?? ''} ${record.error?.message ?? ''})`;
    let about = unverified === undefined ? record.state : `${record.state}, UNVERIFIED: ${unverified}`;
    if (attempt > 1) about += `, attempt ${attempt}`;
    if (files) about += `, files ${JSON.stringify(files)}`;
    return `--- ${multi ? `${jobId} ` : ''}${provenanceOf(record)} (#${record.index}, ${about}) ---\n${body}`;
  };
  return {
    render(jobId, record) {
      const piece = merge === 'list' ? resultView(multi ? jobId : undefined, record) : pieceOf(jobId, record);
      return { entry: piece, cost: cost(piece) };
    },
    shrink({ entry }, left) {
      const piece =
        merge === 'list'
          ? shrinkToFit(entry as Record<string, unknown>, Math.max(256, left - 1))
          : shrinkPiece(entry, Math.max(256, left - 24));
      return { entry: piece, cost: cost(piece) };
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
  const offsets = request.cursor
    ? decodeCursor(request.cursor, request.jobIds)
    : (request.startOffsets ?? request.jobIds.map(() => 0));
  await waitWithProgress(ctx, request);

  await engine.refresh(request.jobIds);
  const snapshots = request.jobIds.map((id) => engine.snapshotOf(id));
  const budgetChars = request.budgetTokens * CHARS_PER_TOKEN;
  const header = fitHeader(snapshots, budgetChars * 0.3);
  const { views: jobViews, lines: notes } = liveViews(snapshots, engine.runningProgress());
  header.push(...notes);
  const stages = await stageIndex(ctx, snapshots);
  // The status lines (text) or the job views (structured), the upstream index, the next step and
  // the keys around them; the next step names the jobs up to 4 times (calls, cursors).
  const overhead =
    Math.max(header.join('\n').length, JSON.stringify(jobViews).length) +
    (stages.length > 0 ? JSON.stringify(stages).length : 0) +
    RESERVED_CHARS +
    4 * JSON.stringify(request.jobIds).length;
  const multi = request.jobIds.length > 1;
  const jobs = await Promise.all(
    request.jobIds.map(async (id) => {
      const records = await engine.results(id);
      if (request.allAttempts) return { id, records };
      const hidden = earlierAttempts(records, (index) => ({
        state: engine.taskState(id, index),
        attempt: engine.taskAttempt(id, index),
      }));
      return { id, records, hidden };
    }),
  );
  const page = pageResults({
    jobs,
    offsets,
    filter: request.filter,
    room: budgetChars - overhead,
    ...renderer(request.merge, multi),
  });

  const allDone = snapshots.every((s) => s.counts.queued === 0 && s.counts.running === 0);
  const pieces = page.entries;
  // One cursor serves both paging and polling: it marks what this reply showed, per job.
  const nextCursor = page.cut || !allDone ? encodeCursor(page.offsets, request.jobIds) : undefined;
  const next = nextStep(request, snapshots, page.remaining, nextCursor, ctx.config.collect);

  const lines: string[] = [...header];
  if (request.merge === 'list') for (const piece of pieces) lines.push(JSON.stringify(piece));
  else if (request.merge === 'text') for (const piece of pieces) lines.push(String(piece));
  else lines.push(JSON.stringify(pieces));
  if (pieces.length === 0)
    lines.push(allDone ? 'No results match on this page.' : 'No new results yet; the jobs are still running.');
  lines.push(next);
  const structured: Record<string, unknown> = { jobs: jobViews, done: allDone };
  // A merge's pieces are its results: a list of them beside it would say it all twice.
  if (request.merge === 'list') structured.results = pieces;
  if (stages.length > 0) {
    structured.upstream = stages;
    lines.splice(
      header.length,
      0,
      ...stages.map((stage) => `Upstream ${String(stage.job_id)}: ${String(stage.summary)}`),
    );
  }
  if (request.merge !== 'list') structured.merged = request.merge === 'json' ? pieces : pieces.join('\n');
  structured.remaining = page.remaining;
  if (nextCursor) structured.next_cursor = nextCursor;
  structured.next = next;
  return { text: lines.join('\n'), structured };
}

/** Failed upstream tasks named in a stage index: enough to see what is missing, not a page of them. */
const FAILED_NAMED = 20;

/**
 * For jobs that run on another job's results (a reduce, a later stage): a short index of that job
 * (its counts, the tasks that failed by name), not its per-task answers, which stay collectable.
 */
async function stageIndex(
  ctx: ToolContext<unknown>,
  snapshots: readonly JobSnapshot[],
): Promise<Array<Record<string, unknown>>> {
  const index: Array<Record<string, unknown>> = [];
  for (const snapshot of snapshots) {
    const upstreamId = snapshot.after?.job;
    const upstream = upstreamId === undefined ? undefined : ctx.engine.get(upstreamId);
    if (!upstream) continue;
    const failed = latestRecords(await ctx.engine.results(upstream.id)).filter(
      (record) => record.state !== 'succeeded',
    );
    const c = upstream.counts;
    const entry: Record<string, unknown> = {
      job_id: upstream.id,
      kind: upstream.kind,
      state: upstream.state,
      counts: c,
      summary: `${upstream.state}, ${c.succeeded}/${c.total} succeeded${c.failed ? `, ${c.failed} failed` : ''}${c.cancelled ? `, ${c.cancelled} cancelled` : ''}; its per-task results: ${call('collect_results', { job_ids: [upstream.id] })}`,
    };
    if (failed.length > 0) {
      entry.failed = failed
        .slice(0, FAILED_NAMED)
        .map((record) => ({ id: provenanceOf(record), code: record.error?.code ?? record.state }));
      if (failed.length > FAILED_NAMED) entry.failed_more = failed.length - FAILED_NAMED;
    }
    index.push(entry);
  }
  return index;
}

/** Characters kept for the next step and the reply's own keys. */
const RESERVED_CHARS = 700;

/** Waits for the jobs (bounded), sending progress as tasks finish and a heartbeat while none do. */
async function waitWithProgress(ctx: ToolContext<unknown>, request: CollectRequest): Promise<void> {
  const { engine } = ctx;
  let lastProgress = 0;
  const report = (): void => {
    const now = Date.now();
    if (now - lastProgress < 250) return;
    lastProgress = now;
    const { done, total } = tasksDone(request.jobIds.map((id) => engine.snapshotOf(id)));
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
      lines.push(
        `…and ${rest.length} more job(s): ${done}/${total} tasks done (per-job counts in structuredContent.jobs, or collect fewer jobs at once).`,
      );
      break;
    }
    lines.push(line);
    used += line.length + 1;
  }
  return lines;
}

const PIECE_CUT = '…[cut to fit the page; the full output is in the files list mode shows]';

/** A merged piece cut to `room` characters; a JSON piece keeps its id and is cut in its output. */
function shrinkPiece(piece: unknown, room: number): unknown {
  const cut = (text: string, keep: number): string =>
    text.length <= keep ? text : `${text.slice(0, Math.max(64, keep - PIECE_CUT.length))}${PIECE_CUT}`;
  if (typeof piece === 'string') return cut(piece, room);
  if (piece && typeof piece === 'object' && 'output' in piece) {
    const { output, ...rest } = piece as { output: unknown };
    const text = typeof output === 'string' ? output : JSON.stringify(output);
    return { ...rest, output: cut(text, room - JSON.stringify(rest).length - 16) };
  }
  return piece;
}

export const collectResultsTool = defineTool({
  name: 'collect_results',
  title: 'Collect job results',
  description: [
    'Waits (bounded) for jobs, then returns their status and one page of finished results in finish order, within a budget.',
    'Reply: jobs (state, counts); done; results (id = what the task worked on, state, value = output, files = full outputs on disk);',
    'remaining (ready, not on this page); next (the exact next call: pages on, then only newer results).',
  ].join(' '),
  inputSchema: {
    job_ids: z.array(z.string().min(1)).min(1).max(50).describe('From a tool that starts jobs, or list_jobs.'),
    wait_seconds: z
      .number()
      .min(0)
      .optional()
      .describe('Wait up to N s for the jobs (default 20, max ~50; 0: answer now).'),
    cursor: z.string().optional().describe("The previous reply's next_cursor (same job_ids)."),
    filter: z
      .enum(['all', 'failed', 'succeeded', 'unverified'])
      .optional()
      .describe('failed includes cancelled; unverified: answers that failed their checks.'),
    merge: z
      .enum(['list', 'text', 'json'])
      .optional()
      .describe('list (default): results; json/text: merged instead, as [{id, output|error}] or one text.'),
    budget_tokens: z.number().int().min(200).optional().describe('Page size (default 8000 tokens; at most 12000).'),
    all_attempts: z.boolean().optional().describe('Also earlier attempts of tasks run again.'),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const { collect: limits } = ctx.config;
    const request: CollectRequest = {
      jobIds: [...new Set(args.job_ids)],
      waitSeconds: withinLimit(
        'wait_seconds',
        args.wait_seconds ?? limits.defaultWaitSeconds,
        limits.maxWaitSeconds,
        'collect.maxWaitSeconds',
      ),
      filter: args.filter ?? 'all',
      merge: args.merge ?? 'list',
      budgetTokens: withinLimit(
        'budget_tokens',
        args.budget_tokens ?? limits.defaultBudgetTokens,
        limits.maxBudgetTokens,
        'collect.maxBudgetTokens',
      ),
    };
    if (args.budget_tokens !== undefined) request.budgetAsked = true;
    if (args.cursor !== undefined) request.cursor = args.cursor;
    if (args.all_attempts) request.allAttempts = true;
    return collect(ctx, request);
  },
});
