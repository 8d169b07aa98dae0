import { cancelJobTool } from './cancel_job.js';
import { collectResultsTool } from './collect_results.js';
import { listJobsTool } from './list_jobs.js';
import { resumeJobTool } from './resume_job.js';
import type { AnyTool, ServerFacts } from './tool.js';

/** The tools every server has, whatever its kinds: they work on jobs. */
export function jobTools(facts: ServerFacts): AnyTool[] {
  return [collectResultsTool, listJobsTool(facts), cancelJobTool, resumeJobTool];
}
