import * as z from 'zod';
import { DEFAULT_MAX_STEPS, llmKind, MOST_STEPS } from '../pools/llm/index.js';
import { dispatchFields, submitPlan } from './dispatch.js';
import { listOrFile, type ListFileSpec, withFileLine } from './inputs_file.js';
import { defineKindTool, taskCapOf } from './tool.js';
import type { TaskCap } from '../pools/kind.js';

const taskSchema = z.strictObject({
  id: z.string().max(200).optional().describe('Names its result (default: its position).'),
  task: z.string().min(1).describe('What to find out, as you would ask a colleague.'),
  paths: z
    .array(z.string().min(1))
    .max(64)
    .optional()
    .describe('Folders, files or globs the agent may look at (default: all allowed folders).'),
});

function tasksFile(cap: TaskCap): ListFileSpec<z.infer<typeof taskSchema>> {
  return { argument: 'tasks_file', list: 'tasks', element: taskSchema, cap, example: '{"task": "Where is …?"}' };
}

export const lmstudioInvestigateTool = defineKindTool(llmKind, {
  dispatch: true,
  name: 'lmstudio_investigate',
  title: 'Hand tasks to local agents that read the code',
  description: [
    "Local agents: each task runs on the local model as a bounded loop over read-only tools (list_files, read_file, grep, outline; confined to the allowed folders and the task's paths), many at once; returns a job_id at once, then collect_results.",
    'Use it to delegate exploring ("how does auth check tokens?", "why does this test fail?") without reading the files yourself; lmstudio_complete when you already know what to send.',
    'A result\'s value: text (or json), citations checked by the server against the files (verified true/false, citations_verified "k/n"), steps, tool_calls, tokens_in/out, bytes_read, max_steps_reached when cut; the step log is files.transcript.',
  ].join(' '),
  inputSchema: {
    tasks: z.array(taskSchema).min(1).optional().describe('One investigation each.'),
    tasks_file: z
      .string()
      .min(1)
      .optional()
      .describe('Instead of tasks: a JSONL file inside the allowed folders, one task per line.'),
    model: z.string().optional().describe('A model id from lmstudio_models; one that calls tools well is best.'),
    max_steps: z
      .number()
      .int()
      .min(1)
      .max(MOST_STEPS)
      .optional()
      .describe(`Model requests per task before it must finish (default ${DEFAULT_MAX_STEPS}).`),
    max_tokens: z.number().int().min(1).optional().describe('Longest answer of one step in tokens.'),
    temperature: z.number().min(0).max(2).optional().describe('Sampling temperature.'),
    json_schema: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('JSON Schema the final answer must match (one corrective retry).'),
    concurrency: z.number().int().min(1).optional().describe('Investigations at once (default: 2 per slot).'),
    timeout_seconds: z.number().positive().max(7200).optional().describe('Longest wait for one step (default 600 s).'),
    reduce: z
      .union([
        z.string().min(1),
        z.strictObject({ prompt: z.string().min(1), max_tokens: z.number().int().min(1).optional() }),
      ])
      .optional()
      .describe("Merge all findings into one answer on the local model; the job_id returned is the merge's."),
    from_job: z
      .string()
      .min(1)
      .optional()
      .describe(
        "One investigation per task of that job as it succeeds; give one task whose text is a template: {{output}}, {{id}}, a JSON output's fields.",
      ),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    const spec = tasksFile(taskCapOf(ctx));
    const tasks = await listOrFile(spec, args.tasks, args.tasks_file, ctx.config, ctx.signal);
    const plan = await ctx.kind
      .investigate(
        {
          tasks: tasks?.items,
          model: args.model,
          maxSteps: args.max_steps,
          maxTokens: args.max_tokens,
          temperature: args.temperature,
          jsonSchema: args.json_schema,
          concurrency: args.concurrency,
          timeoutSeconds: args.timeout_seconds,
          reduce:
            typeof args.reduce === 'string'
              ? { prompt: args.reduce }
              : args.reduce && { prompt: args.reduce.prompt, maxTokens: args.reduce.max_tokens },
          upstream:
            args.from_job === undefined
              ? undefined
              : { jobId: args.from_job, labels: await ctx.engine.labelsOf(args.from_job) },
        },
        ctx.signal,
      )
      .catch((error: unknown) => {
        throw withFileLine(error, spec, tasks);
      });
    return submitPlan(ctx, plan, args, plan.notes);
  },
});
