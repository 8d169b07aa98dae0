import type { ToolDefinition } from './tool.js';
import { cancelJobTool } from './cancel_job.js';
import { collectResultsTool } from './collect_results.js';
import { httpBatchTool } from './http_batch.js';
import { listJobsTool } from './list_jobs.js';
import { listWorkersTool } from './list_workers.js';
import { lmstudioCompleteTool } from './lmstudio_complete.js';
import { lmstudioModelsTool } from './lmstudio_models.js';
import { resumeJobTool } from './resume_job.js';
import { runScriptBatchTool } from './run_script_batch.js';

/** The one registry: every tool the server offers, in the order clients list them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each entry keeps its own schema type
export const allTools: ReadonlyArray<ToolDefinition<any>> = [
  runScriptBatchTool,
  listWorkersTool,
  lmstudioCompleteTool,
  lmstudioModelsTool,
  httpBatchTool,
  collectResultsTool,
  listJobsTool,
  cancelJobTool,
  resumeJobTool,
];
