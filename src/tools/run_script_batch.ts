import * as z from 'zod';
import { MAX_TIMEOUT_SECONDS } from '../config/core.js';
import { scriptKind } from '../pools/script/index.js';
import { scriptTaskInputSchema } from '../pools/script/pool.js';
import { dispatchFields, submitPlan } from './dispatch.js';
import { defineKindTool } from './tool.js';

const MAX_TASKS = 10_000;

export const runScriptBatchTool = defineKindTool(scriptKind, {
  dispatch: true,
  name: 'run_script_batch',
  title: 'Run a worker script over many inputs in parallel',
  description: [
    'Runs one worker script (see list_workers) once per input, many at once in a local process pool, as one background job; returns a job_id at once. Collect the outputs with collect_results while you work on something else.',
    'Use it for mechanical work over many files: dependency analysis, code statistics, regex search with context, or any script the user put in a workers folder. Send file paths, not file contents: the worker reads the files.',
    'Each task\'s result value has exit_code, json (stdout parsed, when the worker printed JSON) or text (stdout, a preview when long), stderr_tail, stdout_bytes and truncated flags; large outputs are saved to files listed in the result. A non-zero exit is a failed task (NON_ZERO_EXIT) that still carries its output; a task over timeout_seconds is killed with its child processes (TIMEOUT).',
    'No shell is involved: args are passed exactly as given. The worker\'s environment adds MONITOR_JOB_ID, MONITOR_TASK_INDEX, MONITOR_ATTEMPT, MONITOR_STDIN_FORMAT (json, text or none) and MONITOR_OUTPUT_DIR.',
  ].join(' '),
  inputSchema: {
    worker: z.string().min(1).optional().describe('The worker to run, by the name list_workers shows, e.g. "code_stats.py". Give either worker or command.'),
    command: z.string().min(1).optional().describe('Instead of a worker: an executable the user explicitly allowed (allowCommands in the server config; off by default), named exactly as allowed, e.g. "rg".'),
    inputs: z.array(scriptTaskInputSchema).min(1, { error: 'inputs is empty: give at least one task, e.g. [{"args": ["src/a.ts"]}].' }).max(MAX_TASKS).describe(`The tasks, 1 to ${MAX_TASKS}; results keep this order's indices.`),
    concurrency: z.number().int().min(1, { error: 'concurrency must be a whole number from 1 up to the server maximum (script.maxConcurrency, 64 unless configured); omit it for the default (the number of CPUs).' }).optional().describe('Tasks of this job running at once. Default: the number of CPUs; at most the server\'s maximum (usually 64).'),
    timeout_seconds: z.number().positive({ error: 'timeout_seconds must be more than 0; omit it for the default (300 s unless configured).' }).max(MAX_TIMEOUT_SECONDS).optional().describe('Per task: a task running longer is killed, with its child processes. Default 300 unless configured.'),
    env: z.record(z.string(), z.string()).optional().describe('Environment variables added for every task (on top of the server\'s). Stored with the job: never put secrets here. Variables that change which code runs (PATH, NODE_OPTIONS, LD_*, PYTHON*, BASH_ENV, …) and MONITOR_* are refused.'),
    cwd: z.string().min(1).optional().describe('Working folder of the tasks, where relative paths in args resolve. Must be inside the allowed roots; default the first allowed root (the project folder).'),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const plan = await ctx.kind.plan({
      worker: args.worker,
      command: args.command,
      inputs: args.inputs,
      concurrency: args.concurrency,
      timeoutSeconds: args.timeout_seconds,
      env: args.env,
      cwd: args.cwd,
    });
    return submitPlan(ctx, plan, args);
  },
});
