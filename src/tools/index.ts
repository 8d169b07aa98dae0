import type { ToolDefinition } from './tool.js';
import { cancelJobTool } from './cancel_job.js';
import { collectResultsTool } from './collect_results.js';
import { listJobsTool } from './list_jobs.js';
import { resumeJobTool } from './resume_job.js';

/** The one registry: every tool the server offers, in the order clients list them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each entry keeps its own schema type
export const allTools: ReadonlyArray<ToolDefinition<any>> = [
  collectResultsTool,
  listJobsTool,
  cancelJobTool,
  resumeJobTool,
];
