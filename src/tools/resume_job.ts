import * as z from 'zod';
import { dispatchReply } from './dispatch.js';
import { describeJob } from './format.js';
import { defineTool } from './tool.js';

export const resumeJobTool = defineTool({
  name: 'resume_job',
  title: 'Resume a job',
  description:
    'Runs the unfinished tasks of an existing job again, in the same job: tasks "interrupted" by a server restart always; failed and cancelled tasks when asked. Finished results are kept. Returns the job handle, like the dispatch tools; then use collect_results.',
  inputSchema: {
    job_id: z.string().min(1).describe('The job to resume (list_jobs shows interrupted jobs).'),
    include_failed: z.boolean().optional().describe('Also retry tasks that failed (default false).'),
    include_cancelled: z.boolean().optional().describe('Also run tasks that were cancelled (default false).'),
    wait_seconds: z.number().min(0).optional().describe('Wait up to this long for the job and return its first results inline (default 0: return at once).'),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    await ctx.engine.refresh([args.job_id]);
    const { requeued, snapshot } = await ctx.engine.resume(args.job_id, {
      failed: args.include_failed ?? false,
      cancelled: args.include_cancelled ?? false,
    });
    if (requeued === 0) {
      return { text: `Nothing to resume (no interrupted${args.include_failed ? ', failed' : ''}${args.include_cancelled ? ', cancelled' : ''} tasks).\n${describeJob(snapshot)}`, structured: { job_id: snapshot.id, requeued } };
    }
    const reply = await dispatchReply(ctx, args.job_id, args.wait_seconds, { resumed: requeued });
    return { text: reply.text, structured: { ...reply.structured, requeued } };
  },
});
