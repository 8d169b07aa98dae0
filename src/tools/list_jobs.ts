import * as z from 'zod';
import type { JobSnapshot } from '../engine/types.js';
import type { DamagedJob } from '../store/records.js';
import type { CoreConfig } from '../config/core.js';
import { call, describeJob, formatAge, jobView, orList, waitNote } from './format.js';
import { defineTool, type ServerFacts } from './tool.js';

/** Running jobs one suggested collect_results call names, at most. */
const COLLECT_AT_ONCE = 10;

export function listJobsTool(facts: ServerFacts) {
  return defineTool({
    name: 'list_jobs',
    title: 'List jobs',
    description:
      'Lists jobs, newest first, also from before a restart: id, kind, label, state, counts, times; next: the exact call to make. Kept a few days after they finish.',
    inputSchema: {
      state: z
        .enum(['active', 'finished', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'])
        .optional()
        .describe('active = queued or running; finished = the others.'),
      kind: z
        .string()
        .optional()
        .describe(`${orList(facts.kinds)}.`),
      limit: z.number().int().min(1).max(200).optional().describe('Default 20.'),
    },
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async handler(args, ctx) {
      const active = (state: string): boolean => state === 'queued' || state === 'running';
      await ctx.engine.refresh();
      const all = ctx.engine.list().filter((job) => {
        if (args.kind && job.kind !== args.kind) return false;
        if (args.state === 'active') return active(job.state);
        if (args.state === 'finished') return !active(job.state);
        return args.state === undefined || job.state === args.state;
      });
      const limit = args.limit ?? 20;
      const shown = all.slice(0, limit);
      // Damaged jobs are no kind and never active: listed after the others, unless a filter leaves them out.
      const damaged =
        args.kind || (args.state !== undefined && args.state !== 'finished') ? [] : ctx.engine.damagedJobs();
      const damagedShown = damaged.slice(0, Math.max(0, limit - shown.length));
      const now = Date.now();
      const lines = shown.map((job) => `${describeJob(job)}; created ${formatAge(job.createdAt, now)}`);
      for (const job of damagedShown) lines.push(`${job.id} damaged: ${job.path}: ${job.reason}`);
      const next: string[] = [];
      if (damagedShown.length > 0) next.push(DAMAGED_NEXT);
      if (shown.length + damagedShown.length === 0)
        next.push(
          all.length === 0 && args.state === undefined && !args.kind
            ? `No jobs yet. Submit one with ${orList(facts.dispatchTools)}.`
            : `No job matches; ${call('list_jobs', {})} lists them all.`,
        );
      const total = all.length + damaged.length;
      if (total > shown.length + damagedShown.length)
        next.push(
          `${total - shown.length - damagedShown.length} more job(s) match: ${call('list_jobs', { ...args, limit: Math.min(200, total) })} lists them.`,
        );
      const interrupted = shown.filter((job) => job.counts.interrupted > 0 && job.ownerPid === undefined);
      if (interrupted.length > 0) {
        next.push(
          `Interrupted jobs were cut off by a server restart; to run their unfinished tasks again call ${interrupted.map((job) => call('resume_job', { job_id: job.id })).join(', ')}.`,
        );
      } else if (shown.length > 0) next.push(collectNext(shown, ctx.config.collect));
      lines.push(...next);
      return {
        text: lines.join('\n'),
        structured: {
          jobs: [...shown.map(jobView), ...damagedShown.map(damagedView)],
          shown: shown.length + damagedShown.length,
          total,
          next: next.join(' '),
        },
      };
    },
  });
}

const DAMAGED_NEXT =
  'A damaged job has a file that fails its check (damaged.path and damaged.reason say which and why): it is left out of everything else. Inspect its folder and remove it when done; the other jobs are not affected.';

/** A damaged job as list_jobs shows it: which file failed and why, and where it was moved to. */
function damagedView(job: DamagedJob): Record<string, unknown> {
  const damaged: Record<string, string> = { path: job.path, reason: job.reason };
  if (job.moved_to !== undefined) damaged.moved_to = job.moved_to;
  return { job_id: job.id, state: 'damaged', damaged };
}

/** The results most worth collecting: the jobs still running (those a model waits for), else the newest job's. */
function collectNext(shown: readonly JobSnapshot[], limits: CoreConfig['collect']): string {
  const running = shown.filter((job) => job.state === 'queued' || job.state === 'running').slice(0, COLLECT_AT_ONCE);
  if (running.length > 0)
    return `${call('collect_results', { job_ids: running.map((job) => job.id) })}: ${waitNote(limits, 'the running job(s)')}, then pages their results.`;
  const newest = shown[0];
  return newest ? `${call('collect_results', { job_ids: [newest.id] })} shows the newest job's results.` : '';
}
