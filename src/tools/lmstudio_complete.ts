import * as z from 'zod';
import { llmKind } from '../pools/llm/index.js';
import { checksFields, checksOf } from './checks.js';
import { dispatchFields, submitPlan, upstreamOf } from './dispatch.js';
import { listOrFile, type ListFileSpec, withFileLine } from './inputs_file.js';
import { defineKindTool, taskCapOf } from './tool.js';
import type { TaskCap } from '../pools/kind.js';

const scalar = z.union([z.string(), z.number(), z.boolean()]);

const messageSchema = z.strictObject({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });

const promptSchema = z.strictObject({
  id: z.string().max(200).optional().describe('Names its result.'),
  prompt: z.string().optional().describe('The user message.'),
  messages: z.array(messageSchema).min(1).optional().describe('A conversation instead of prompt.'),
});

const itemSchema = z.record(z.string(), scalar);

/** The file forms of prompts and items; their cap is the kind's (llm.maxTasks), known per server. */
function listFiles(cap: TaskCap): {
  prompts: ListFileSpec<z.infer<typeof promptSchema>>;
  items: ListFileSpec<z.infer<typeof itemSchema>>;
} {
  return {
    prompts: {
      argument: 'prompts_file',
      list: 'prompts',
      element: promptSchema,
      cap,
      example: '{"prompt": "Explain …"}',
    },
    items: { argument: 'items_file', list: 'items', element: itemSchema, cap, example: '{"topic": "auth"}' },
  };
}

export const lmstudioCompleteTool = defineKindTool(llmKind, {
  dispatch: true,
  name: 'lmstudio_complete',
  title: 'Run prompts on local LLMs in parallel',
  description: [
    'Runs prompts on local LLMs (LM Studio or any OpenAI-compatible server) in parallel as one background job; returns a job_id at once, then collect_results.',
    'Give prompts, or a template filled from items (one task each) and/or files (one per file; files × items with both): the server reads the files, not your context.',
    "A result's value: text (cut: true: its start; all in files.output) or json, model, endpoint, tokens, finish_reason, truncated (max_tokens cut it); with checks, verified. To explore code instead: lmstudio_investigate.",
  ].join(' '),
  inputSchema: {
    prompts: z.array(promptSchema).min(1).optional().describe('One task each.'),
    prompts_file: z.string().min(1).optional().describe('Instead of prompts: a JSONL file, one per line.'),
    template: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A prompt with {{KEY}} for item values; with files {{content}}, {{path}}, {{name}}, {{chunk}}, {{chunks}}.',
      ),
    items: z.array(itemSchema).min(1).optional().describe('Template values, e.g. {"topic": "auth"}; "id" names it.'),
    items_file: z.string().min(1).optional().describe('Instead of items: a JSONL file, one per line.'),
    files: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('Paths or globs in the allowed folders (** skips dot-folders, node_modules).'),
    system: z.string().optional().describe('System prompt before every prompt.'),
    model: z.string().optional().describe('From lmstudio_models (default: configured, else the loaded LLM).'),
    temperature: z.number().min(0).max(2).optional().describe('Sampling temperature.'),
    max_tokens: z.number().int().min(1).optional().describe('Longest answer in tokens (reasoning models need room).'),
    stop: z.array(z.string().min(1)).max(8).optional().describe('Stop sequences.'),
    seed: z.number().int().optional().describe('Sampling seed.'),
    json_schema: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('JSON Schema each answer must match (retried once); the value is then json.'),
    include_reasoning: z.boolean().optional().describe("Also return the model's reasoning."),
    chunk: z.boolean().optional().describe('Split files too large for the context into chunks, one task each.'),
    chunk_tokens: z.number().int().min(64).optional().describe('Chunk size in tokens (implies chunk).'),
    context_length: z.number().int().min(256).optional().describe('Context needed (tokens).'),
    concurrency: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('Prompts at once (default and most: what the endpoints take).'),
    timeout_seconds: z
      .number()
      .positive()
      .max(7200)
      .optional()
      .describe('Per answer (default 600 s), not counting queue time.'),
    group: z
      .enum(['all', 'folder'])
      .optional()
      .describe(
        'Pack files into few prompts, each under "### path": "all" together (then reduced), "folder" one per folder.',
      ),
    reduce: z
      .union([
        z.string().min(1),
        z.strictObject({ prompt: z.string().min(1), max_tokens: z.number().int().min(1).optional() }),
      ])
      .optional()
      .describe(
        "Merge all answers on the local model with this prompt (a tree if they do not fit); returns the merge's job_id.",
      ),
    from_job: z
      .string()
      .min(1)
      .optional()
      .describe(
        "A later stage: one prompt per task of that job as it succeeds; the template gets {{output}}, {{id}}, a JSON output's fields.",
      ),
    ...checksFields,
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    const specs = listFiles(taskCapOf(ctx));
    const prompts = await listOrFile(specs.prompts, args.prompts, args.prompts_file, ctx.config, ctx.signal);
    const items = await listOrFile(specs.items, args.items, args.items_file, ctx.config, ctx.signal);
    const plan = await ctx.kind
      .plan(
        {
          prompts: prompts?.items,
          template: args.template,
          items: items?.items,
          files: args.files,
          system: args.system,
          model: args.model,
          temperature: args.temperature,
          maxTokens: args.max_tokens,
          stop: args.stop,
          seed: args.seed,
          jsonSchema: args.json_schema,
          includeReasoning: args.include_reasoning,
          chunk: args.chunk,
          chunkTokens: args.chunk_tokens,
          contextLength: args.context_length,
          concurrency: args.concurrency,
          timeoutSeconds: args.timeout_seconds,
          group: args.group,
          reduce:
            typeof args.reduce === 'string'
              ? { prompt: args.reduce }
              : args.reduce && { prompt: args.reduce.prompt, maxTokens: args.reduce.max_tokens },
          upstream: await upstreamOf(ctx, args.from_job),
          ...checksOf(args),
        },
        ctx.signal,
      )
      .catch((error: unknown) => {
        throw withFileLine(error, specs.prompts, prompts);
      });
    return submitPlan(ctx, plan, args, plan.notes);
  },
});
