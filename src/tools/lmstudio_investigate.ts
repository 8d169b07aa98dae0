import * as z from 'zod';
import { DEFAULT_MAX_STEPS, llmKind, MOST_STEPS } from '../pools/llm/index.js';
import { checksOf, investigateChecksFields } from './checks.js';
import { dispatchFields, submitPlan, upstreamOf } from './dispatch.js';
import { listOrFile, type ListFileSpec, withFileLine } from './inputs_file.js';
import { defineKindTool, taskCapOf } from './tool.js';
import type { TaskCap } from '../pools/kind.js';

const taskSchema = z.strictObject({
  id: z.string().max(200).optional().describe('Names its result.'),
  task: z.string().min(1).describe('What to find out.'),
  paths: z.array(z.string().min(1)).max(64).optional().describe('Folders, files or globs it may read (default: all).'),
});

function tasksFile(cap: TaskCap): ListFileSpec<z.infer<typeof taskSchema>> {
  return { argument: 'tasks_file', list: 'tasks', element: taskSchema, cap, example: '{"task": "Where is …?"}' };
}

export const lmstudioInvestigateTool = defineKindTool(llmKind, {
  dispatch: true,
  name: 'lmstudio_investigate',
  title: 'Hand tasks to local agents that read the code',
  description: [
    'Local agents: each task runs on the local model as a bounded loop of read-only tools (list_files, read_file, grep, outline) in the allowed folders and its paths, many at once; returns a job_id, then collect_results.',
    'Delegate exploring ("why does this test fail?") without reading files yourself.',
    'A result: text or json, its citations checked (verified), steps, tokens; files.transcript.',
  ].join(' '),
  inputSchema: {
    tasks: z.array(taskSchema).min(1).optional().describe('One agent each.'),
    tasks_file: z.string().min(1).optional().describe('Instead of tasks: a JSONL file, one per line.'),
    model: z.string().optional().describe('From lmstudio_models; one that calls tools well.'),
    max_steps: z
      .number()
      .int()
      .min(1)
      .max(MOST_STEPS)
      .optional()
      .describe(`Model requests per task before it must finish (default ${DEFAULT_MAX_STEPS}).`),
    max_tokens: z.number().int().min(1).optional().describe('Longest answer of one step.'),
    temperature: z.number().min(0).max(2).optional().describe('Sampling temperature.'),
    json_schema: z.record(z.string(), z.unknown()).optional().describe('JSON Schema the final answer must match.'),
    context_length: z.number().int().min(256).optional().describe('Context needed (tokens).'),
    concurrency: z.number().int().min(1).optional().describe('Agents at once (default: 2 per slot).'),
    timeout_seconds: z.number().positive().max(7200).optional().describe('Longest wait for one step (default 600).'),
    reduce: z.string().min(1).optional().describe('Merge all findings into one answer on the local model.'),
    from_job: z
      .string()
      .min(1)
      .optional()
      .describe('One agent per result of that job; the one task is a template: {{output}}, {{id}}.'),
    ...investigateChecksFields,
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
          contextLength: args.context_length,
          concurrency: args.concurrency,
          timeoutSeconds: args.timeout_seconds,
          reduce: args.reduce === undefined ? undefined : { prompt: args.reduce },
          upstream: await upstreamOf(ctx, args.from_job),
          ...checksOf(args),
        },
        ctx.signal,
      )
      .catch((error: unknown) => {
        throw withFileLine(error, spec, tasks);
      });
    return submitPlan(ctx, plan, args, plan.notes);
  },
});
