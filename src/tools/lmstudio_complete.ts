import * as z from 'zod';
import { llmKind } from '../pools/llm/index.js';
import { dispatchFields, submitPlan } from './dispatch.js';
import { defineKindTool } from './tool.js';

const scalar = z.union([z.string(), z.number(), z.boolean()]);

const messageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']).describe('Who says it.'),
  content: z.string().describe('The message text.'),
});

const promptSchema = z.strictObject({
  id: z.string().max(200).optional().describe('Your name for this prompt, repeated in its result (default: its 1-based position).'),
  prompt: z.string().optional().describe('The user message. Give either prompt or messages.'),
  messages: z.array(messageSchema).min(1).optional().describe('A whole conversation instead of prompt (the model answers the last message).'),
});

export const lmstudioCompleteTool = defineKindTool(llmKind, {
  dispatch: true,
  name: 'lmstudio_complete',
  title: 'Run prompts on local LLMs in parallel',
  description: [
    'Sends a batch of prompts to the local LLMs (LM Studio, or any OpenAI-compatible server the user configured: Ollama, llama.cpp, vLLM) as one background job, at the parallelism the GPU takes, and returns a job_id at once; collect the answers with collect_results.',
    'Two ways to give the work: `prompts` (a list of prompts or conversations), or a `template` with {{placeholders}} filled from `items` (one task per item) and/or `files` (paths or glob patterns such as "src/**/*.ts"; one task per file).',
    'With files, the server reads each file itself and fills {{content}}, {{path}} and {{name}}, so file contents never pass through your context: prefer this over pasting files into prompts. With both files and items, every file is combined with every item.',
    'A file too large for the model\'s context fails with CONTEXT_OVERFLOW unless chunk is true: then it is split into chunks (one task each; {{chunk}} and {{chunks}} give the chunk number and count).',
    'For structured answers pass json_schema: each answer is validated (one corrective retry), and collect_results shows it parsed in `json`; use merge "json" there to get one array.',
    'Each result has the answer (`text` or `json`), the model and endpoint used, tokens in/out, duration and finish_reason (truncated: true when max_tokens cut it). Reasoning ("thinking") is left out unless include_reasoning is true.',
    'Transient failures (connection dropped, 429, 502, 503, 504, a stream cut off) are retried with backoff, an empty answer once; permanent ones (unknown model, context overflow, 401) fail that item with a code and a hint.',
    'Call lmstudio_models first if you do not know which models are available.',
  ].join(' '),
  inputSchema: {
    prompts: z.array(promptSchema).min(1).optional().describe('The prompts, one task each. Use this or template, not both.'),
    template: z
      .string()
      .min(1)
      .optional()
      .describe('A prompt with {{placeholders}}. {{KEY}} is the value under KEY in each item (e.g. {{topic}} for items [{"topic": "auth"}]). With files also {{content}} (the file\'s text), {{path}} (its path), {{name}} (its file name), {{chunk}} and {{chunks}}; with files, items may not use these five keys. Example: "Summarise {{path}} in 3 bullet points:\\n\\n{{content}}".'),
    items: z
      .array(z.record(z.string(), scalar))
      .min(1)
      .optional()
      .describe('Values for the template, one task per item, e.g. [{"topic": "auth"}, {"topic": "billing"}]. An item\'s "id" value names its result.'),
    files: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('Files for the template: paths or glob patterns (*, ?, **, {a,b}) inside the allowed folders, relative to the first one. `**` skips dot-folders and node_modules. A pattern that matches nothing is an error.'),
    system: z.string().optional().describe('System prompt sent before every prompt. Not allowed with prompts whose messages start with their own system message.'),
    model: z.string().optional().describe('Model id as lmstudio_models lists it. Default: the configured default model, else the LLM loaded in LM Studio.'),
    temperature: z.number().min(0).max(2).optional().describe('Sampling temperature (0 = most deterministic). Default: the server\'s.'),
    max_tokens: z.number().int().min(1).optional().describe('Longest answer in tokens. Default: the server\'s (often unlimited). Reasoning models need room to think.'),
    stop: z.array(z.string().min(1)).max(8).optional().describe('Stop sequences: generation ends before any of them.'),
    seed: z.number().int().optional().describe('Sampling seed, for repeatable answers where the server supports it.'),
    json_schema: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('A JSON Schema the answer must match, e.g. {"type":"object","properties":{"summary":{"type":"string"},"risk":{"type":"integer"}},"required":["summary","risk"]}. Sent as response_format; answers are validated.'),
    include_reasoning: z.boolean().optional().describe('Also return the model\'s reasoning ("thinking") in each result. Default false: it is kept apart and left out.'),
    chunk: z.boolean().optional().describe('Split files too large for one prompt into chunks sized to the model\'s context, one task each. Default false.'),
    chunk_tokens: z.number().int().min(64).optional().describe('Chunk size in tokens (implies chunk: true). Default: what fits the model\'s context with room for the answer.'),
    concurrency: z.number().int().min(1).optional().describe('At most this many prompts of this job at once. Default: what the endpoints serving the model allow together (LM Studio: 4).'),
    timeout_seconds: z.number().positive().max(7200).optional().describe('Longest wait for one answer, in seconds (default: monitor-mcp\'s "llm.requestTimeoutSeconds", 600 unless configured). Queue time does not count.'),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    const plan = await ctx.kind.plan(
      {
        prompts: args.prompts,
        template: args.template,
        items: args.items,
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
        concurrency: args.concurrency,
        timeoutSeconds: args.timeout_seconds,
      },
      ctx.signal,
    );
    return submitPlan(ctx, plan, args, plan.notes);
  },
});
