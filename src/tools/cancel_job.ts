import * as z from 'zod';
import { call, describeJob, jobView } from './format.js';
import { defineTool } from './tool.js';

export const cancelJobTool = defineTool({
  name: 'cancel_job',
  title: 'Cancel a job',
  description:
    'Stops a job: queued tasks dropped, running ones killed (with child processes) or aborted. Finished results stay; resume_job with include_cancelled reruns the rest. Stopping a pipeline stage stops every stage.',
  inputSchema: {
    job_id: z.string().min(1).describe('The job to stop.'),
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  async handler(args, ctx) {
    await ctx.engine.refresh([args.job_id]);
    const before = ctx.engine.snapshotOf(args.job_id);
    const after = await ctx.engine.cancel(args.job_id);
    const { queued, running, interrupted } = before.counts;
    const stopped = queued + running + interrupted;
    const head =
      stopped === 0
        ? 'Nothing to cancel: the job had finished.'
        : interrupted > 0
          ? `Cancelled ${interrupted} interrupted task(s): their server had stopped; the job is cancelled now.`
          : `Cancelled ${queued} queued and ${running} running task(s).`;
    const next = `${call('collect_results', { job_ids: [after.id] })} shows what finished${stopped === 0 ? '' : `; ${call('resume_job', { job_id: after.id, include_cancelled: true })} runs the cancelled tasks again`}.`;
    return {
      text: [head, describeJob(after), next].join('\n'),
      structured: {
        ...jobView(after),
        cancelled_queued: queued,
        cancelled_running: running,
        cancelled_interrupted: interrupted,
        next,
      },
    };
  },
});
