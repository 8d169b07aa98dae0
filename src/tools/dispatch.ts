import * as z from 'zod';
import type { JobPlan, JobSnapshot } from '../engine/types.js';
import { collect, type CollectRequest } from './collect_results.js';
import { call, jobView, waitNote } from './format.js';
import { encodeCursor } from './paging.js';
import { type ToolContext, type ToolReply, withinLimit } from './tool.js';

/** The fields every dispatch tool takes, described once. */
export const dispatchFields = {
  label: z.string().max(200).optional().describe('A short name for list_jobs.'),
  wait_seconds: z.number().min(0).optional().describe('Wait up to N s for results here (default 0, max ~50).'),
};

/** A later stage's upstream (from_job): the job and what each of its tasks worked on, one task each. */
export async function upstreamOf(
  ctx: ToolContext<unknown>,
  fromJob: string | undefined,
): Promise<{ jobId: string; labels: string[] } | undefined> {
  return fromJob === undefined ? undefined : { jobId: fromJob, labels: await ctx.engine.labelsOf(fromJob) };
}

/** Submits a kind's plan and answers with the job handle (or its first page); `notes` go first. */
export async function submitPlan(
  ctx: ToolContext<unknown>,
  plan: JobPlan,
  args: { label?: string | undefined; wait_seconds?: number | undefined },
  given: readonly string[] = [],
): Promise<ToolReply> {
  let notes = given;
  const { kind, inputs, options, concurrency } = plan;
  // Before submitting: a refused call must leave no job behind.
  checkWait(ctx, args.wait_seconds);
  const label = args.label === undefined ? {} : { label: args.label };
  const job = await ctx.engine.submit({
    kind,
    inputs,
    options,
    concurrency,
    ...label,
    ...(plan.after ? { after: plan.after } : {}),
  });
  const upstream = plan.after && ctx.engine.get(plan.after.job);
  if (upstream && upstream.counts.interrupted > 0) {
    notes = [
      ...notes,
      `Job ${upstream.id} has ${upstream.counts.interrupted} interrupted task(s) (cut off by a restart): their tasks here wait until ${call('resume_job', { job_id: job.id })} runs them again.`,
    ];
  }
  if (!plan.then) return dispatchReply(ctx, job.id, args.wait_seconds, { notes });
  const { kind: thenKind, inputs: thenInputs, options: thenOptions, concurrency: thenConcurrency } = plan.then;
  const reduce = await ctx.engine
    .submit({
      kind: thenKind,
      inputs: thenInputs,
      options: thenOptions,
      concurrency: thenConcurrency,
      label: `${args.label ?? job.id} (reduce)`,
      after: { job: job.id, mode: 'all' },
    })
    .catch(async (error: unknown) => {
      // A map without its reduce is not what was asked for: nothing is left half-submitted.
      await ctx.engine.cancel(job.id).catch(() => undefined);
      throw error;
    });
  const stages = `Map job ${job.id} (${inputs.length} task(s)) → reduce job ${reduce.id}: collecting ${reduce.id} waits for both and returns the one merged answer, with an index of the map's results (its per-item answers stay collectable from ${job.id}).`;
  return dispatchReply(ctx, reduce.id, args.wait_seconds, { notes: [...notes, stages] });
}

/**
 * What every dispatch tool answers: the job handle at once, or — when the caller asked to wait —
 * the first page of results if the job finishes within `waitSeconds`.
 */
export async function dispatchReply(
  ctx: ToolContext<unknown>,
  jobId: string,
  waitSeconds: number | undefined,
  options: { resumed?: number; recordsBefore?: number; notes?: readonly string[] } = {},
): Promise<ToolReply> {
  const wait = checkWait(ctx, waitSeconds);
  const resumed = options.resumed !== undefined;
  const notes = options.notes ?? [];
  // A resumed job's results from before are not news: its pages start after them (read before the
  // resume, so a task run again that finishes at once is not skipped).
  const startOffset = resumed ? (options.recordsBefore ?? (await ctx.engine.results(jobId)).length) : 0;
  if (wait > 0) {
    const request: CollectRequest = {
      jobIds: [jobId],
      waitSeconds: wait,
      filter: 'all',
      merge: 'list',
      budgetTokens: ctx.config.collect.defaultBudgetTokens,
    };
    if (resumed) request.startOffsets = [startOffset];
    const reply = await collect(ctx, request);
    return {
      text: [`job_id: ${jobId}`, ...notes, reply.text].join('\n'),
      structured: { job_id: jobId, ...(notes.length > 0 ? { notes } : {}), ...reply.structured },
    };
  }
  const job: JobSnapshot = ctx.engine.snapshotOf(jobId);
  const collectArgs: Record<string, unknown> = { job_ids: [jobId] };
  if (resumed) collectArgs.cursor = encodeCursor([startOffset], [jobId]);
  const pages = resumed
    ? 'then pages the results of the tasks run again (without cursor: all its results)'
    : 'then pages its results';
  const next = `Keep working on something else, then call ${call('collect_results', collectArgs)}: ${waitNote(ctx.config.collect, 'the job')}, ${pages}. ${call('cancel_job', { job_id: jobId })} stops it.`;
  const head = resumed
    ? `Resumed ${jobId}: ${options.resumed ?? 0} task(s) queued again, of kind ${job.kind}, up to ${job.concurrency} at once.`
    : `Submitted ${jobId}: ${job.counts.total} task(s) of kind ${job.kind}, up to ${job.concurrency} at once.`;
  const structured: Record<string, unknown> = { ...jobView(job) };
  if (notes.length > 0) structured.notes = notes;
  structured.next = next;
  return { text: [head, ...notes, next].join('\n'), structured };
}

/** A dispatch tool's wait_seconds, refused over the server's longest wait. */
export function checkWait(ctx: ToolContext<unknown>, waitSeconds: number | undefined): number {
  return withinLimit('wait_seconds', waitSeconds ?? 0, ctx.config.collect.maxWaitSeconds, 'collect.maxWaitSeconds');
}
