import * as z from 'zod';
import { describeJob, formatAge, jobView, orList } from './format.js';
import { defineTool, type ServerFacts } from './tool.js';

export function listJobsTool(facts: ServerFacts) {
  return defineTool({
    name: 'list_jobs',
    title: 'List jobs',
    description:
      'Lists the jobs this server knows (including those from before a restart), newest first: id, kind, label, state, task counts, age and wall time. Use it to find a job_id again, or to see what still runs. Jobs are kept on disk for a few days after they finish (see the server instructions).',
    inputSchema: {
      state: z
        .enum(['active', 'finished', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'])
        .optional()
        .describe('Only jobs in this state. "active" = queued or running; "finished" = everything else.'),
      kind: z.string().optional().describe(`Only jobs of this kind: ${orList(facts.kinds)}.`),
      limit: z.number().int().min(1).max(200).optional().describe('At most this many jobs (default 20).'),
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
      if (shown.length === 0) lines.push(all.length === 0 && args.state === undefined && !args.kind ? `No jobs yet. Submit one with ${orList(facts.dispatchTools)}.` : 'No job matches.');
      if (all.length > shown.length) lines.push(`(${all.length - shown.length} more; raise limit to see them)`);
      if (shown.some((job) => job.state === 'interrupted')) {
        lines.push('Interrupted jobs were cut off by a server restart: resume_job runs their unfinished tasks again.');
      }
      return { text: lines.join('\n'), structured: { jobs: shown.map(jobView), total: all.length } };
    },
  });
}
