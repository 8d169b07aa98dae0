import * as z from 'zod';
import { describeJob, jobView } from './format.js';
import { defineTool } from './tool.js';

export const cancelJobTool = defineTool({
  name: 'cancel_job',
  title: 'Cancel a job',
  description:
    'Stops a job: its queued tasks are dropped and its running tasks are stopped (processes killed with their children, HTTP requests aborted). Results that already finished stay collectable. Cancelled tasks can be run again with resume_job (include_cancelled).',
  inputSchema: {
    job_id: z.string().min(1).describe('The job to stop, as returned by a dispatch tool or list_jobs.'),
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  async handler(args, ctx) {
    await ctx.engine.refresh([args.job_id]);
    const before = ctx.engine.snapshotOf(args.job_id);
    const after = await ctx.engine.cancel(args.job_id);
    const stopped = before.counts.queued + before.counts.running;
    const text = stopped === 0
      ? `Nothing to cancel: ${describeJob(after)}`
      : `Cancelled ${before.counts.queued} queued and ${before.counts.running} running task(s).\n${describeJob(after)}`;
    return { text, structured: jobView(after) };
  },
});
