import * as z from 'zod';
import { checkWait, dispatchFields, dispatchReply } from './dispatch.js';
import { call, describeJob, jobView } from './format.js';
import { defineTool } from './tool.js';

export const resumeJobTool = defineTool({
  name: 'resume_job',
  title: 'Resume a job',
  description:
    "Runs a job's unfinished tasks again, in the same job: interrupted always, failed and cancelled when asked. Finished results stay. A stage of a pipeline resumes every stage, and a reduce whose inputs ran again.",
  inputSchema: {
    job_id: z.string().min(1).describe('The job.'),
    include_failed: z.boolean().optional().describe('Also failed tasks.'),
    include_cancelled: z.boolean().optional().describe('Also cancelled tasks.'),
    wait_seconds: dispatchFields.wait_seconds,
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    checkWait(ctx, args.wait_seconds);
    await ctx.engine.refresh([args.job_id]);
    const recordsBefore = (await ctx.engine.results(args.job_id)).length;
    const { requeued, snapshot } = await ctx.engine.resume(args.job_id, {
      failed: args.include_failed ?? false,
      cancelled: args.include_cancelled ?? false,
    });
    if (requeued === 0) {
      const next = `Nothing to resume: the job has no interrupted${args.include_failed ? ', failed' : ''}${args.include_cancelled ? ', cancelled' : ''} tasks${args.include_failed && args.include_cancelled ? '' : ' (include_failed / include_cancelled add those)'}. ${call('collect_results', { job_ids: [snapshot.id] })} shows its results.`;
      return { text: `${next}\n${describeJob(snapshot)}`, structured: { ...jobView(snapshot), requeued, next } };
    }
    const reply = await dispatchReply(ctx, args.job_id, args.wait_seconds, { resumed: requeued, recordsBefore });
    return { text: reply.text, structured: { ...reply.structured, requeued } };
  },
});
