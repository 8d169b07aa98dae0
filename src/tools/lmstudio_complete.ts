import { readFile, stat } from 'node:fs/promises';
import * as z from 'zod';
import { MonitorError } from '../errors.js';
import { resolveRoots } from '../paths.js';
import { expandFiles } from '../pools/llm/glob.js';
import {
  CHUNK_BYTES_PER_TOKEN,
  checkPlaceholders,
  chunkRanges,
  displayPath,
  estimateTokens,
  FILE_PLACEHOLDERS,
  looksBinary,
} from '../pools/llm/template.js';
import type { ChatMessage, FileRef, LlmJobOptions, LlmTaskInput } from '../pools/llm/types.js';
import { dispatchFields, dispatchReply } from './collect_results.js';
import { defineTool } from './tool.js';

/** Context assumed for chunk sizing when no endpoint tells the model's context length. */
const ASSUMED_CONTEXT_TOKENS = 4096;
/** Files larger than this are not cut into chunks at submit time (it reads them whole to find line breaks). */
const MAX_CHUNKED_FILE_BYTES = 64 * 1024 * 1024;

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

export const lmstudioCompleteTool = defineTool({
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
    const llm = ctx.services.llm;
    const settings = ctx.config.llm;
    if ((args.prompts === undefined) === (args.template === undefined)) {
      throw new MonitorError('INVALID_INPUT', args.prompts ? 'Give either prompts or template, not both.' : 'Nothing to send: give prompts, or a template with items and/or files.', {
        hint: 'prompts: [{"prompt": "…"}], or template: "… {{content}} …" with files: ["src/**/*.ts"].',
      });
    }
    if (args.prompts === undefined && args.items === undefined && args.files === undefined) {
      throw new MonitorError('INVALID_INPUT', 'A template needs items and/or files to fill it.', { hint: 'Add files: ["path/or/**/*.glob"] or items: [{"name": "value"}].' });
    }
    if (args.prompts !== undefined && (args.items !== undefined || args.files !== undefined)) {
      throw new MonitorError('INVALID_INPUT', 'items and files go with a template, not with prompts.', { hint: 'Use template with {{placeholders}} instead of prompts.' });
    }
    if (args.json_schema !== undefined) llm.schemas.compile(args.json_schema);

    const resolved = await llm.resolveModel(args.model, ctx.signal);
    const options: LlmJobOptions = { model: resolved.model, timeout_seconds: args.timeout_seconds ?? settings.requestTimeoutSeconds };
    if (args.system !== undefined) options.system = args.system;
    if (args.template !== undefined) options.template = args.template;
    if (args.temperature !== undefined) options.temperature = args.temperature;
    if (args.max_tokens !== undefined) options.max_tokens = args.max_tokens;
    if (args.stop !== undefined) options.stop = args.stop;
    if (args.seed !== undefined) options.seed = args.seed;
    if (args.json_schema !== undefined) options.json_schema = args.json_schema;
    if (args.include_reasoning) options.include_reasoning = true;

    const notes: string[] = [];
    let inputs: LlmTaskInput[];
    if (args.prompts !== undefined) {
      inputs = args.prompts.map((p, i) => ({ id: p.id ?? String(i + 1), messages: toMessages(p, i, args.system !== undefined) }));
    } else {
      const template = args.template ?? '';
      const items = args.items;
      const fileNames = new Set<string>(FILE_PLACEHOLDERS);
      if (items && args.files) {
        const clash = items.flatMap((item) => Object.keys(item)).find((k) => fileNames.has(k));
        if (clash) throw new MonitorError('INVALID_INPUT', `Item value "${clash}" has the name of a file placeholder.`, { hint: `Rename it: ${FILE_PLACEHOLDERS.join(', ')} are filled from each file.` });
      }
      const available = new Set<string>(args.files ? FILE_PLACEHOLDERS : []);
      if (items) {
        // Every item must fill every placeholder: check the names all items share.
        const shared = items.map((item) => new Set(Object.keys(item))).reduce((a, b) => new Set([...a].filter((k) => b.has(k))));
        for (const key of shared) available.add(key);
      }
      checkPlaceholders(template, available, items ? (args.files ? 'the files and every item' : 'every item') : 'the files');

      let files: FileRef[] | undefined;
      if (args.files) {
        const roots = ctx.config.allowedRoots;
        const matched = await expandFiles(args.files, { roots, maxFiles: settings.maxFiles });
        const realRoots = await resolveRoots(roots);
        const chunkTokens = args.chunk_tokens ?? (args.chunk ? autoChunkTokens(resolved.contextLength, options) : undefined);
        files = [];
        let oversized = 0;
        for (const file of matched) {
          const display = displayPath(file, realRoots);
          if (chunkTokens === undefined) {
            const { size } = await stat(file);
            if (resolved.contextLength !== undefined && size / 4 > resolved.contextLength) oversized++;
            files.push({ path: file, display });
            continue;
          }
          // One push per chunk: spreading 100k+ chunks into push() overflows the stack.
          for (const chunk of await chunkFile(file, display, chunkTokens * CHUNK_BYTES_PER_TOKEN, settings.maxFileBytes, settings.maxTasks - files.length, settings.maxTasks)) files.push(chunk);
        }
        if (oversized > 0) {
          notes.push(`Note: ${oversized} file(s) look larger than the model's context (${resolved.contextLength} tokens) and will fail with CONTEXT_OVERFLOW; cancel and resubmit with chunk: true to split them.`);
        }
        if (chunkTokens !== undefined) notes.push(`Files were cut into chunks of about ${chunkTokens} tokens: ${files.length} task(s) from ${matched.length} file(s).`);
      }

      inputs = [];
      const itemList = items ?? [undefined];
      for (const file of files ?? [undefined]) {
        itemList.forEach((item, i) => {
          const input: LlmTaskInput = { id: taskId(file, item, i, items !== undefined) };
          if (item) input.values = item;
          if (file) input.file = file;
          inputs.push(input);
        });
        if (inputs.length > settings.maxTasks) break;
      }
    }
    if (inputs.length > settings.maxTasks) throw tooManyTasks(settings.maxTasks, '');

    const capacity = llm.router.capacityOf(resolved.endpoints);
    const inFlight = Math.max(1, Math.min(args.concurrency ?? capacity, capacity));
    options.concurrency = inFlight;
    const job = await ctx.engine.submit({
      kind: llm.pool.kind,
      inputs,
      options,
      concurrency: inFlight,
      ...(args.label === undefined ? {} : { label: args.label }),
    });
    const reply = await dispatchReply(ctx, job.id, args.wait_seconds);
    const head = `Model ${resolved.model} on ${resolved.endpoints.join(', ')}, up to ${inFlight} prompt(s) at once.`;
    return { text: [head, ...notes, reply.text].join('\n'), ...(reply.structured ? { structured: reply.structured } : {}) };
  },
});

function toMessages(p: z.infer<typeof promptSchema>, index: number, hasSystem: boolean): ChatMessage[] {
  if ((p.prompt === undefined) === (p.messages === undefined)) {
    throw new MonitorError('INVALID_INPUT', `prompts[${index}] needs exactly one of prompt or messages.`, { hint: 'e.g. {"prompt": "Explain …"}' });
  }
  if (hasSystem && p.messages?.[0]?.role === 'system') {
    throw new MonitorError('INVALID_INPUT', `prompts[${index}] starts with its own system message, and \`system\` is given too: only one can be used.`, {
      hint: 'Drop `system`, or drop the system message from that prompt\'s messages (or put the text of both into one).',
    });
  }
  return p.messages ?? [{ role: 'user', content: p.prompt ?? '' }];
}

function taskId(file: FileRef | undefined, item: Record<string, string | number | boolean> | undefined, index: number, hasItems: boolean): string {
  const itemId = item && item.id !== undefined ? String(item.id) : String(index + 1);
  if (!file) return itemId;
  const fileId = file.chunks !== undefined && file.chunks > 1 ? `${file.display}#${file.chunk ?? 1}` : file.display;
  return hasItems ? `${fileId} | ${itemId}` : fileId;
}

/** Tokens per chunk that leave room for the template, the system prompt and the answer. */
function autoChunkTokens(contextLength: number | undefined, options: LlmJobOptions): number {
  const context = contextLength ?? ASSUMED_CONTEXT_TOKENS;
  const answer = options.max_tokens ?? Math.min(1024, Math.floor(context / 4));
  const overhead = estimateTokens((options.template ?? '') + (options.system ?? '')) + 64;
  return Math.max(128, Math.floor((context - answer - overhead) * 0.9));
}

function tooManyTasks(maxTasks: number, why: string): MonitorError {
  return new MonitorError('INVALID_INPUT', `This would be more than ${maxTasks} tasks${why}.`, {
    hint: 'Split the work into several calls, narrow the file patterns, or use larger chunks (chunk_tokens). The cap is "llm.maxTasks" in the config file.',
  });
}

/**
 * Reads a file once at submit to cut it at line breaks; only the byte ranges are stored. `room` is
 * how many more tasks the job may have: a file that needs more is refused before it is read.
 */
async function chunkFile(file: string, display: string, chunkBytes: number, maxFileBytes: number, room: number, maxTasks: number): Promise<FileRef[]> {
  const { size } = await stat(file);
  const bytesPerChunk = Math.max(16, Math.min(chunkBytes, maxFileBytes));
  const fewest = Math.ceil(size / bytesPerChunk);
  if (fewest > room) throw tooManyTasks(maxTasks, `: ${display} needs at least ${fewest} chunks of ${bytesPerChunk} bytes, and only ${room} more fit`);
  if (size > MAX_CHUNKED_FILE_BYTES) {
    throw new MonitorError('INVALID_INPUT', `${display} is ${size} bytes; files over ${MAX_CHUNKED_FILE_BYTES} bytes are not chunked.`, {
      hint: 'Split it first (e.g. with run_script_batch), or leave it out of files.',
    });
  }
  const buffer = await readFile(file);
  if (looksBinary(buffer)) {
    throw new MonitorError('INVALID_INPUT', `${display} looks binary (it contains NUL bytes); only text files can go into a prompt.`, {
      hint: 'Narrow the file patterns to text files.',
    });
  }
  const ranges = chunkRanges(buffer, bytesPerChunk, room + 1);
  if (ranges.length > room) throw tooManyTasks(maxTasks, `: ${display} needs more than the ${room} chunks of ${bytesPerChunk} bytes that still fit`);
  return ranges.map((range, i) => ({ path: file, display, chunk: i + 1, chunks: ranges.length, start: range.start, end: range.end, size: buffer.length }));
}
