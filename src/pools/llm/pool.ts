import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod';
import { MonitorError, toTaskError } from '../../errors.js';
import type { Pool, TaskContext, TaskResult } from '../../engine/types.js';
import { resolveInsideRoots } from '../../paths.js';
import { splitReasoning } from './reasoning.js';
import { Deadline } from './deadline.js';
import { DOWN_FOR_MS, type LlmService } from './service.js';
import { estimateTokens, readFileForPrompt, renderTemplate } from './template.js';
import type { ChatAnswer, ChatMessage, LlmJobOptions, LlmTaskInput } from './types.js';
import { isConnectionFailure, retryAfterMs } from './upstream.js';

const messageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });
const fileRefSchema = z.object({
  path: z.string(),
  display: z.string(),
  chunk: z.number().int().optional(),
  chunks: z.number().int().optional(),
  start: z.number().int().optional(),
  end: z.number().int().optional(),
  size: z.number().int().optional(),
});
const inputSchema = z.union([
  z.object({ id: z.string(), messages: z.array(messageSchema).min(1) }),
  z.object({ id: z.string(), values: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(), file: fileRefSchema.optional() }),
]);
const optionsSchema = z.object({
  model: z.string(),
  system: z.string().optional(),
  template: z.string().optional(),
  temperature: z.number().optional(),
  max_tokens: z.number().int().optional(),
  stop: z.array(z.string()).optional(),
  seed: z.number().int().optional(),
  json_schema: z.record(z.string(), z.unknown()).optional(),
  include_reasoning: z.boolean().optional(),
  timeout_seconds: z.number().positive(),
  concurrency: z.number().int().positive().optional(),
});

/** Answers up to this long stay inline only; longer ones also go whole to a file. */
const SHORT_TEXT_CHARS = 480;

/** Engine-level tasks per request slot: see LlmPool.concurrency. */
export const PREFETCH_FACTOR = 2;

/** Parsed job options by the engine's options object: every task of a job shares the same one. */
const parsedOptions = new WeakMap<object, LlmJobOptions>();

function jobOptions(value: unknown): LlmJobOptions {
  if (typeof value === 'object' && value !== null) {
    const cached = parsedOptions.get(value);
    if (cached) return cached;
    const parsed = parseStored(optionsSchema, value, 'job options');
    parsedOptions.set(value, parsed);
    return parsed;
  }
  return parseStored(optionsSchema, value, 'job options');
}

/** Inputs and options come back from disk after a restart: check them rather than trust them. */
function parseStored<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new MonitorError('INVALID_INPUT', `The stored ${what} of this task is not valid: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
  return parsed.data;
}

/** Backoff for transient failures: exponential, capped, with jitter; the server's Retry-After wins. */
export function backoffMs(retry: number, retryAfter?: number, random: () => number = Math.random): number {
  if (retryAfter !== undefined) return Math.min(30_000, retryAfter);
  const ceiling = Math.min(8_000, 250 * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

interface Usage {
  promptTokens: number;
  completionTokens: number;
  estimated: boolean;
}

/**
 * The `llm` worker kind. One task = one prompt (a file chunk filled into the template, or ready
 * messages). Routes to the least busy endpoint serving the job's model, fails over on connection
 * failures, retries transient errors with backoff, validates JSON answers (one corrective retry),
 * and keeps reasoning apart from the answer.
 */
export class LlmPool implements Pool {
  readonly kind = 'llm';
  private readonly service: LlmService;

  constructor(service: LlmService) {
    this.service = service;
  }

  /**
   * Twice all endpoint limits together. The router enforces each endpoint's limit (and each job's);
   * the extra tasks wait there ready to send, so a freed slot is refilled at once instead of after
   * the engine has recorded the previous answer (worth ~3% of wall time on short prompts).
   */
  get concurrency(): number {
    return this.service.router.capacity * PREFETCH_FACTOR;
  }

  readonly prefetch = PREFETCH_FACTOR;

  async prepareJob(job: { jobId: string; options: unknown; signal: AbortSignal }): Promise<void> {
    const options = jobOptions(job.options);
    await this.service.ensureLoaded(options.model, job.signal);
  }

  async run(task: TaskContext): Promise<TaskResult> {
    const options = jobOptions(task.options);
    const input: LlmTaskInput = parseStored(inputSchema, task.input, 'input');
    const base = describeInput(input);
    let messages: ChatMessage[];
    try {
      messages = await this.buildMessages(options, input);
    } catch (error) {
      return { ok: false, error: toTaskError(error), value: base };
    }
    return this.complete(task, options, messages, base);
  }

  private async buildMessages(options: LlmJobOptions, input: LlmTaskInput): Promise<ChatMessage[]> {
    const system: ChatMessage[] = options.system ? [{ role: 'system', content: options.system }] : [];
    if ('messages' in input) {
      return input.messages[0]?.role === 'system' ? input.messages : [...system, ...input.messages];
    }
    if (options.template === undefined) throw new MonitorError('INVALID_INPUT', 'This job has template inputs but no template.');
    const values: Record<string, string> = {};
    for (const [key, value] of Object.entries(input.values ?? {})) values[key] = String(value);
    if (input.file) {
      const { config } = this.service;
      // Checked again at run time: the path may have become a symlink pointing elsewhere since submit.
      const real = await resolveInsideRoots(input.file.path, config.allowedRoots, { what: 'file' });
      const content = await readFileForPrompt({ ...input.file, path: real }, config.llm.maxFileBytes);
      const context = this.service.contextLength(options.model);
      // ~6 bytes a token is a generous lower bound: a file beyond it cannot fit, so do not send it.
      if (context !== undefined && content.length / 6 > context) {
        throw new MonitorError('CONTEXT_OVERFLOW', `The file ${input.file.display} (${content.length} characters, ≈${estimateTokens(content)} tokens) is far larger than the model's context (${context} tokens).`, {
          hint: 'Submit it again with chunk: true (or chunk_tokens) to split it into chunks, one task each; {{chunk}} and {{chunks}} give the chunk number and count.',
        });
      }
      values.path = input.file.display;
      values.name = path.basename(input.file.display);
      values.content = content;
      values.chunk = String(input.file.chunk ?? 1);
      values.chunks = String(input.file.chunks ?? 1);
    }
    return [...system, { role: 'user', content: renderTemplate(options.template, values) }];
  }

  private async complete(task: TaskContext, options: LlmJobOptions, messages: ChatMessage[], base: Record<string, unknown>): Promise<TaskResult> {
    const { service } = this;
    const maxRetries = service.config.llm.maxRetries;
    const timeoutMs = options.timeout_seconds * 1000;
    const usage: Usage = { promptTokens: 0, completionTokens: 0, estimated: false };
    const excluded = new Set<string>();
    let conversation = messages;
    let retries = 0;
    let failovers = 0;
    let schemaRetried = false;
    let requests = 0;
    let lastEndpoint: string | undefined;
    let emptyRetried = false;
    let discovery: 'fresh' | 'cached' = 'cached';

    const fail = (error: unknown, extra: Record<string, unknown> = {}): TaskResult => {
      const value: Record<string, unknown> = { ...base, model: options.model, ...extra, requests };
      if (lastEndpoint !== undefined) value.endpoint = lastEndpoint;
      const result: TaskResult = { ok: false, error: toTaskError(error), value };
      if (usage.promptTokens + usage.completionTokens > 0) result.usage = { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens };
      return result;
    };
    // Transient failures wait and go again; everything else ends the task.
    const retryOrFail = async (error: unknown): Promise<TaskResult | undefined> => {
      if (!(error instanceof MonitorError && error.retryable) || retries >= maxRetries) return fail(error);
      // An empty answer is often deterministic (the prompt overflowed the context): one more try only.
      if (error.code === 'EMPTY_ANSWER') {
        if (emptyRetried) return fail(error);
        emptyRetried = true;
      }
      retries++;
      await sleep(backoffMs(retries, retryAfterMs(error)), undefined, { signal: task.signal });
      return undefined;
    };

    for (;;) {
      task.signal.throwIfAborted();
      const found = await service.candidatesFor(options.model, discovery, task.signal);
      // No list known at all (the server was down when asked): let the request itself find out.
      const endpoints = found.endpoints.length > 0 ? found.endpoints : found.unverified;
      if (endpoints.length === 0) {
        const error = found.error ?? new MonitorError('MODEL_NOT_FOUND', `No endpoint serves model "${options.model}".`);
        // A cached list may be out of date: look again once before giving up, without waiting.
        if (discovery === 'cached') {
          discovery = 'fresh';
          continue;
        }
        const verdict = await retryOrFail(error);
        if (verdict) return verdict;
        continue;
      }
      let choices = endpoints.filter((e) => !excluded.has(e));
      if (choices.length === 0) {
        excluded.clear();
        choices = endpoints;
      }
      const lease = await service.router.acquire(choices, task.signal, options.concurrency === undefined ? undefined : { key: task.jobId, limit: options.concurrency });
      lastEndpoint = lease.endpoint;
      const client = service.client(lease.endpoint);
      const model = found.served[lease.endpoint] ?? options.model;
      const deadline = new Deadline(timeoutMs, [task.signal], () =>
        new MonitorError('TIMEOUT', `No complete answer from ${lease.endpoint} within ${options.timeout_seconds} s.`, {
          hint: 'Raise timeout_seconds, lower max_tokens, or send less per prompt.',
        }),
      );
      let answer: ChatAnswer;
      requests++;
      try {
        const params: Parameters<typeof client.chat>[0] = { model, messages: conversation };
        if (options.temperature !== undefined) params.temperature = options.temperature;
        if (options.max_tokens !== undefined) params.maxTokens = options.max_tokens;
        if (options.stop !== undefined) params.stop = options.stop;
        if (options.seed !== undefined) params.seed = options.seed;
        if (options.json_schema !== undefined) params.jsonSchema = options.json_schema;
        answer = await client.chat(params, { signal: deadline.signal, timeoutMs });
      } catch (caught) {
        deadline.clear();
        lease.release();
        if (task.signal.aborted) throw task.signal.reason;
        let error = deadline.expired ? deadline.signal.reason : caught;
        if (isConnectionFailure(error)) {
          service.router.markDown(lease.endpoint, DOWN_FOR_MS);
          excluded.add(lease.endpoint);
          // Another endpoint serving the model takes it at once, without backoff.
          if (endpoints.some((e) => !excluded.has(e)) && failovers < endpoints.length) {
            failovers++;
            service.log.debug(`task ${task.index} of ${task.jobId}: ${lease.endpoint} unreachable, failing over`);
            continue;
          }
        }
        if (error instanceof MonitorError && error.code === 'MODEL_NOT_FOUND') error = await service.explainUnknownModel(lease.endpoint, error, task.signal);
        const verdict = await retryOrFail(error);
        if (verdict) return verdict;
        continue;
      }
      deadline.clear();
      lease.release();
      service.router.markUp(lease.endpoint);

      addUsage(usage, answer, conversation);
      const split = splitReasoning(answer.content, answer.reasoning);
      const truncated = answer.finishReason === 'length';
      const meta: Record<string, unknown> = {
        model: answer.model,
        endpoint: lease.endpoint,
        finish_reason: answer.finishReason,
        truncated,
        tokens_in: usage.promptTokens,
        tokens_out: usage.completionTokens,
        duration_ms: Math.round(answer.durationMs),
      };
      if (answer.ttftMs !== undefined) meta.ttft_ms = Math.round(answer.ttftMs);
      if (usage.estimated) meta.tokens_estimated = true;
      if (requests > 1) meta.requests = requests;

      if (split.answer.length === 0) {
        if (split.reasoning.length > 0 && truncated) {
          return fail(
            new MonitorError('EMPTY_ANSWER', `The model spent all ${options.max_tokens ?? 'its'} max_tokens reasoning and gave no answer.`, {
              hint: 'Raise max_tokens (reasoning models need room to think before they answer).',
            }),
            meta,
          );
        }
        const verdict = await retryOrFail(
          new MonitorError('EMPTY_ANSWER', `Endpoint ${lease.endpoint} returned an empty answer (finish_reason ${answer.finishReason ?? 'none'}).`, {
            hint: 'It was tried once more. Check the prompt and the server log; an empty answer can mean the prompt overflowed the context.',
            retryable: true,
          }),
        );
        if (verdict) return { ...verdict, value: { ...base, ...meta } };
        continue;
      }

      let json: unknown;
      if (options.json_schema !== undefined) {
        const check = service.schemas.check(options.json_schema, split.answer);
        if (!check.ok) {
          if (!schemaRetried) {
            schemaRetried = true;
            conversation = [
              ...messages,
              { role: 'assistant', content: split.answer },
              { role: 'user', content: `That answer does not match the required JSON schema: ${check.error}. Reply again with only the JSON value, matching this schema exactly:\n${JSON.stringify(options.json_schema)}` },
            ];
            continue;
          }
          const raw = await this.keep(task, split.answer, 'answer');
          const failed = fail(
            new MonitorError('SCHEMA_INVALID', `The answer does not match json_schema, also after one corrective retry: ${check.error}.${truncated ? ' It was cut off by max_tokens.' : ''}`, {
              hint: truncated ? 'Raise max_tokens so the JSON can be completed.' : 'Simplify the schema or the prompt, or try a stronger model. The raw answer is in `text`.',
            }),
            { ...meta, ...raw.inline },
          );
          return raw.file === undefined ? failed : { ...failed, files: { answer: raw.file } };
        }
        json = check.value;
      }

      const value: Record<string, unknown> = { ...base };
      const files: Record<string, string> = {};
      const kept = await this.keep(task, split.answer, 'answer');
      if (kept.file !== undefined) files.answer = kept.file;
      if (json !== undefined) value.json = json;
      else Object.assign(value, kept.inline);
      if (options.include_reasoning && split.reasoning.length > 0) {
        const reasoning = await this.keep(task, split.reasoning, 'reasoning');
        if (reasoning.file !== undefined) files.reasoning = reasoning.file;
        Object.assign(value, reasoning.inline);
      }
      Object.assign(value, meta);
      if (answer.durationMs > 0 && answer.completionTokens !== undefined) value.tokens_per_second = Math.round(answer.completionTokens / (answer.durationMs / 1000));
      const result: TaskResult = { ok: true, value, usage: { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens } };
      if (Object.keys(files).length > 0) result.files = files;
      return result;
    }
  }

  /**
   * Writes the whole text to the task's output file (collect_results may cut long values to fit a
   * page; the file always has everything) and returns the inline part, cut at the configured cap.
   */
  private async keep(task: TaskContext, text: string, kind: 'answer' | 'reasoning'): Promise<{ inline: Record<string, unknown>; file?: string }> {
    const field = kind === 'answer' ? 'text' : 'reasoning';
    const cap = this.service.config.llm.maxInlineChars;
    const inline = text.length <= cap ? { [field]: text } : { [field]: `${text.slice(0, cap)}…`, [`${field}_cut`]: true };
    // collect_results never cuts a result below 512 characters: short answers need no file.
    if (text.length <= SHORT_TEXT_CHARS) return { inline };
    const file = path.join(task.outputDir, `${task.index}.${kind}.txt`);
    // Answers may quote private files: readable by the owner only, like the rest of the state dir.
    try {
      await writeFile(file, text, { mode: 0o600 });
    } catch {
      // The store creates outputDir at submit; recreate it if it was removed since.
      await mkdir(task.outputDir, { recursive: true, mode: 0o700 });
      await writeFile(file, text, { mode: 0o600 });
    }
    return { inline, file };
  }
}

function describeInput(input: LlmTaskInput): Record<string, unknown> {
  const base: Record<string, unknown> = { id: input.id };
  if ('file' in input && input.file) {
    base.file = input.file.display;
    if (input.file.chunks !== undefined && input.file.chunks > 1) base.chunk = `${input.file.chunk ?? 1}/${input.file.chunks}`;
  }
  return base;
}

/** Adds the server's token counts, or an estimate (flagged) when it sent none. */
function addUsage(usage: Usage, answer: ChatAnswer, conversation: readonly ChatMessage[]): void {
  if (answer.promptTokens !== undefined) usage.promptTokens += answer.promptTokens;
  else {
    usage.promptTokens += estimateTokens(conversation.map((m) => m.content).join('\n'));
    usage.estimated = true;
  }
  if (answer.completionTokens !== undefined) usage.completionTokens += answer.completionTokens;
  else {
    usage.completionTokens += estimateTokens(answer.content + answer.reasoning);
    usage.estimated = true;
  }
}
