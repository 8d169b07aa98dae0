import * as z from 'zod';
import { MAX_TIMEOUT_SECONDS } from '../config/core.js';
import type { JobPlan } from '../engine/types.js';
import { MonitorError } from '../errors.js';
import {
  MAX_PACK,
  SCRIPT_MAX_TASKS,
  scriptKind,
  type ScriptServices,
  type ScriptTaskInput,
  scriptTaskInputSchema,
} from '../pools/script/index.js';
import { dispatchFields, submitPlan } from './dispatch.js';
import { type ListFileSpec, requiredListOrFile, withFileLine } from './inputs_file.js';
import { defineKindTool, taskCapOf, type ToolContext } from './tool.js';

const INPUTS_FILE: Omit<ListFileSpec<ScriptTaskInput>, 'cap'> = {
  argument: 'inputs_file',
  list: 'inputs',
  element: scriptTaskInputSchema,
  example: '{"args": ["src/a.ts"]}',
};

const inputShape = {
  worker: z.string().min(1).optional().describe('A worker from list_workers; or give command.'),
  command: z
    .string()
    .min(1)
    .optional()
    .describe('Instead of worker: an executable the user allowed (none by default).'),
  inputs: z
    .array(scriptTaskInputSchema)
    .min(1, { error: 'inputs is empty: give at least one task, e.g. [{"args": ["src/a.ts"]}]' })
    .max(SCRIPT_MAX_TASKS)
    .optional()
    .describe(`The tasks (1–${SCRIPT_MAX_TASKS}); results keep these indices.`),
  inputs_file: z.string().min(1).optional().describe('Instead of inputs: a JSONL file, one per line.'),
  concurrency: z
    .number()
    .int()
    .min(1, {
      error:
        'concurrency must be a whole number from 1 up to the server maximum (script.maxConcurrency, 64 unless configured); omit it for the default (the number of CPUs)',
    })
    .optional()
    .describe('Tasks at once (default: the CPUs; at most usually 64).'),
  timeout_seconds: z
    .number()
    .positive({ error: 'timeout_seconds must be more than 0; omit it for the default (300 s unless configured)' })
    .max(MAX_TIMEOUT_SECONDS)
    .optional()
    .describe('Per task (default 300 s); past it, killed with its children.'),
  env: z
    .record(z.string(), z.string())
    .optional()
    .describe(
      'Variables for every task (stored: no secrets); only LANG, TZ and such unless the worker or user allows more.',
    ),
  cwd: z.string().min(1).optional().describe("Working folder in the allowed folders (default: the project's)."),
  warm: z.boolean().optional().describe('Reuse processes between tasks (default: if the worker is warm).'),
  pack: z
    .number()
    .int()
    .min(2, { error: 'pack must be a whole number from 2 to 64; omit it to run one input per process' })
    .max(MAX_PACK, { error: 'pack must be a whole number from 2 to 64; omit it to run one input per process' })
    .optional()
    .describe(
      "Run up to this many inputs' args in one process (workers with pack: files); still one result per input.",
    ),
  from_job: z
    .string()
    .min(1)
    .optional()
    .describe(
      'A later stage: one task per task of that job as it succeeds, its output on stdin (JSON if it is). Omit inputs, or give one input whose args every task gets.',
    ),
  ...dispatchFields,
};

/** run_script_batch's arguments, as its schema checked them. */
type RunScriptArgs = z.infer<z.ZodObject<typeof inputShape>>;

export const runScriptBatchTool = defineKindTool(scriptKind, {
  dispatch: true,
  name: 'run_script_batch',
  title: 'Run a worker script over many inputs in parallel',
  description: [
    'Runs a worker script once per input in a local process pool, as one background job; returns a job_id at once, then collect_results.',
    'For mechanical work over many files: pass paths in args, the worker reads them. No shell.',
    "A result's value: exit_code, json (parsed stdout) or text (cut: true: its start; all in files.output), stderr_tail. A non-zero exit fails the task but keeps its output.",
  ].join(' '),
  inputSchema: inputShape,
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    if (args.from_job !== undefined) return submitPlan(ctx, await laterStage(args, args.from_job, ctx), args);
    const inputsFile = { ...INPUTS_FILE, cap: taskCapOf(ctx) };
    const inputs = await requiredListOrFile(inputsFile, args.inputs, args.inputs_file, ctx.config, ctx.signal);
    const plan = await ctx.kind
      .plan({
        worker: args.worker,
        command: args.command,
        inputs: inputs.items,
        concurrency: args.concurrency,
        timeoutSeconds: args.timeout_seconds,
        env: args.env,
        cwd: args.cwd,
        warm: args.warm,
        pack: args.pack,
      })
      .catch((error: unknown) => {
        throw withFileLine(error, inputsFile, inputs);
      });
    return submitPlan(ctx, plan, args);
  },
});

/** run_script_batch with from_job: one task per upstream task, fed its output on stdin (see ScriptPool.run). */
async function laterStage(args: RunScriptArgs, fromJob: string, ctx: ToolContext<ScriptServices>): Promise<JobPlan> {
  const [shared, ...more] = args.inputs ?? [];
  if (
    args.inputs_file !== undefined ||
    more.length > 0 ||
    args.pack !== undefined ||
    shared?.stdin !== undefined ||
    shared?.json !== undefined
  ) {
    throw new MonitorError(
      'INVALID_INPUT',
      "With from_job each task gets its upstream task's output on stdin: give no inputs (or one input with the args every task gets), no stdin or json, no inputs_file and no pack.",
      {
        hint: 'e.g. {"worker": "my_check.py", "from_job": "job_…", "inputs": [{"args": ["--strict"]}]}.',
      },
    );
  }
  const labels = await ctx.engine.labelsOf(fromJob);
  const plan = await ctx.kind.plan({
    worker: args.worker,
    command: args.command,
    inputs: labels.map(() => (shared?.args ? { args: shared.args } : {})),
    concurrency: args.concurrency,
    timeoutSeconds: args.timeout_seconds,
    env: args.env,
    cwd: args.cwd,
    warm: args.warm,
  });
  return {
    ...plan,
    inputs: plan.inputs.map((input, i) => ({ ...(input as object), upstream: labels[i] ?? `#${i}` })),
    after: { job: fromJob, mode: 'each' },
  };
}
