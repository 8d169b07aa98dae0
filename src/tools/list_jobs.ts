import * as z from 'zod';
import { call, describeJob, formatAge, jobView, orList } from './format.js';
import { defineTool, type ServerFacts } from './tool.js';

export function listJobsTool(facts: ServerFacts) {
  return defineTool({
    name: 'list_jobs',
    title: 'List jobs',
    description:
      'Lists jobs, newest first, also those from before a restart: id, kind, label, state, counts and times; next says what to do (e.g. resume_job for interrupted jobs). Kept a few days after they finish.',
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
      const shown = all.slice(0, args.limit ?? 20);
      const now = Date.now();
      const lines = shown.map((job) => `${describeJob(job)}; created ${formatAge(job.createdAt, now)}`);
      const next: string[] = [];
      if (shown.length === 0)
        next.push(
          all.length === 0 && args.state === undefined && !args.kind
            ? `No jobs yet. Submit one with ${orList(facts.dispatchTools)}.`
            : 'No job matches.',
        );
      if (all.length > shown.length)
        next.push(`${all.length - shown.length} more job(s) match: raise limit (up to 200) to see them.`);
      const interrupted = shown.filter((job) => job.counts.interrupted > 0 && job.ownerPid === undefined);
      if (interrupted.length > 0) {
        next.push(
          `Interrupted jobs were cut off by a server restart; to run their unfinished tasks again call ${interrupted.map((job) => call('resume_job', { job_id: job.id })).join(', ')}.`,
        );
      }
      if (next.length === 0 && shown.length > 0)
        next.push("collect_results with a job's id in job_ids shows its results.");
      lines.push(...next);
      return {
        text: lines.join('\n'),
        structured: { jobs: shown.map(jobView), shown: shown.length, total: all.length, next: next.join(' ') },
      };
    },
  });
}
