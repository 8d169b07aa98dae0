import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import type { JobTotals, Pool, TaskContext, TaskResult } from '../../engine/types.js';
import { isMonitorError, MonitorError, toTaskError } from '../../errors.js';
import { resolveInsideRoots } from '../../paths.js';
import { shortLabel } from '../kind.js';
import { decideRetry, type RetryPolicy, sleep } from '../retry.js';
import { Deadline } from './deadline.js';
import { DOWN_FOR_MS, type Endpoints } from './endpoints.js';
import { LlmError } from './errors.js';
import { splitReasoning } from './reasoning.js';
import type { SchemaValidator } from './schema.js';
import { estimateTokens, readFileForPrompt, renderTemplate } from './template.js';
import type { ChatAnswer, ChatMessage, LlmJobOptions, LlmTaskInput } from './types.js';
import { answeredStatus, isConnectionFailure, isEndpointAway, retriedOnlyOnce, retryAfterMs, retryAfterTooLong } from './upstream.js';

export const LLM_KIND = 'llm';

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
});

/** Answers up to this long stay inline only; longer ones also go whole to a file. */
const SHORT_TEXT_CHARS = 480;

/** Backoff between retries of one prompt: short, since a local server recovers fast; its Retry-After wins up to 30 s (a longer one fails at once). */
export const LLM_BACKOFF = { baseMs: 250, capMs: 8_000, maxRetryAfterMs: 30_000 } as const;

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

export interface LlmPoolOptions {
  endpoints: Endpoints;
  schemas: SchemaValidator;
  allowedRoots: readonly string[];
  maxRetries: number;
  maxFileBytes: number;
  maxInlineChars: number;
}

/** One task's way through its attempts: what it has spent and tried so far. */
interface Completion {
  task: TaskContext;
  options: LlmJobOptions;
  /** A chunk of a file cut to the context at submit (chunk or chunk_tokens was given). */
  chunked: boolean;
  /** The prompt as built; `conversation` is what the next request sends (a corrective retry adds to it). */
  messages: ChatMessage[];
  conversation: ChatMessage[];
  /** The task's own fields (id, file, chunk), in every value it returns. */
  base: Record<string, unknown>;
  usage: { promptTokens: number; completionTokens: number; estimated: boolean };
  /** Endpoints that refused a connection during this task. */
  excluded: Set<string>;
  discovery: 'fresh' | 'cached';
  requests: number;
  retries: number;
  failovers: number;
  /** Kinds of failure already retried that are retried once only (retriedOnlyOnce). */
  retriedOnce: Set<string>;
  schemaRetried: boolean;
  /** When this task stops waiting for its endpoints to come back (set at its first outage, on endpoints.now's clock). */
  outageUntil?: number;
  lastEndpoint?: string;
}

/**
 * What one attempt came to: an answer (or a final failure) ends the task; `again` and `failover`
 * go on at once (a fresh model list, a corrective prompt, another endpoint); `away` waits (bounded)
 * for one of the endpoints to take connections again; `retry` goes on after the backoff if the
 * policy allows, else fails with `extra` in its value.
 */
type Outcome =
  | { kind: 'done'; result: TaskResult }
  | { kind: 'again' }
  | { kind: 'failover' }
  | { kind: 'away'; endpoints: string[]; error: unknown }
  | { kind: 'retry'; error: unknown; extra?: Record<string, unknown> }
  | { kind: 'fail'; error: unknown; extra?: Record<string, unknown> };

/**
 * The `llm` worker kind's pool. One task = one prompt (a file chunk filled into the template, or
 * ready messages). Routes to the least busy endpoint serving the job's model, fails over on
 * connection failures, retries transient errors with backoff, validates JSON answers (one
 * corrective retry), and keeps reasoning apart from the answer.
 */
export class LlmPool implements Pool {
  readonly kind = LLM_KIND;
  private readonly endpoints: Endpoints;
  private readonly options: LlmPoolOptions;
  private readonly policy: RetryPolicy;

  constructor(options: LlmPoolOptions) {
    this.options = options;
    this.endpoints = options.endpoints;
    this.policy = { maxRetries: options.maxRetries, ...LLM_BACKOFF };
  }

  /** All endpoint limits together: the router holds each endpoint to its own. */
  get concurrency(): number {
    return this.endpoints.router.capacity;
  }

  /** Tokens processed locally, summed over a job's results (their tokens_in/tokens_out). */
  readonly totals: JobTotals<{ prompt: number; completion: number }> = {
    add(totals, value) {
      const v = value as { tokens_in?: unknown; tokens_out?: unknown } | null;
      const prompt = typeof v?.tokens_in === 'number' ? v.tokens_in : 0;
      const completion = typeof v?.tokens_out === 'number' ? v.tokens_out : 0;
      if (prompt + completion === 0) return totals;
      return { prompt: (totals?.prompt ?? 0) + prompt, completion: (totals?.completion ?? 0) + completion };
    },
    view(totals, elapsedMs) {
      const seconds = elapsedMs / 1000;
      const rate = seconds > 0 ? Math.round(totals.completion / seconds) : undefined;
      return {
        fields: { tokens: { prompt: totals.prompt, completion: totals.completion, completion_per_second: rate ?? null } },
        text: `${totals.prompt + totals.completion} tokens processed locally (${totals.prompt} in, ${totals.completion} out${rate === undefined ? '' : ` at ${rate} tok/s out`})`,
      };
    },
  };

  /** A task by its id: the prompt's id, the file (and chunk) or the item it was made from. */
  label(input: unknown): string | undefined {
    const id = (input as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? shortLabel(id) : undefined;
  }

  async prepareJob(job: { jobId: string; options: unknown; signal: AbortSignal }): Promise<void> {
    await this.endpoints.ensureLoaded(jobOptions(job.options).model, job.signal);
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
    const run: Completion = {
      task,
      options,
      chunked: 'file' in input && input.file?.chunks !== undefined,
      messages,
      conversation: messages,
      base,
      usage: { promptTokens: 0, completionTokens: 0, estimated: false },
      excluded: new Set(),
      discovery: 'cached',
      requests: 0,
      retries: 0,
      failovers: 0,
      retriedOnce: new Set(),
      schemaRetried: false,
    };
    for (;;) {
      task.signal.throwIfAborted();
      const outcome = await this.attempt(run);
      if (outcome.kind === 'done') return outcome.result;
      if (outcome.kind === 'again' || outcome.kind === 'failover') continue;
      if (outcome.kind === 'away') {
        if (await this.waitForEndpoints(run, outcome.endpoints)) continue;
        return failure(run, this.stillAway(run, outcome.error));
      }
      if (outcome.kind === 'fail' || !this.mayRetry(run, outcome.error)) return failure(run, outcome.error, outcome.extra);
      const decision = decideRetry(run.retries, this.policy, retryAfterMs(outcome.error));
      if (!decision.retry) {
        const error = decision.reason === 'retry-after-too-long' && isMonitorError(outcome.error) ? retryAfterTooLong(outcome.error, decision.retryAfterMs, this.policy.maxRetryAfterMs) : outcome.error;
        return failure(run, error, outcome.extra);
      }
      run.retries++;
      await sleep(decision.delayMs, task.signal);
    }
  }

  /** Transient failures go again while retries last; an empty answer or a 500 only once. */
  private mayRetry(run: Completion, error: unknown): boolean {
    if (!(isMonitorError(error) && error.retryable) || run.retries >= this.policy.maxRetries) return false;
    const once = retriedOnlyOnce(error);
    if (once === undefined) return true;
    if (run.retriedOnce.has(once)) return false;
    run.retriedOnce.add(once);
    return true;
  }

  /**
   * Waits for one of `endpoints` to take connections again (no retry spent): true when one did;
   * false once the outage outlasted llm's outage bound, or this task's timeout_seconds, whichever
   * is shorter. A cancel ends the wait at once.
   */
  private async waitForEndpoints(run: Completion, endpoints: readonly string[]): Promise<boolean> {
    run.outageUntil ??= this.endpoints.now() + this.outageLimitMs(run);
    this.endpoints.log.debug(`task ${run.task.index} of ${run.task.jobId}: ${endpoints.join(', ')} not taking connections, waiting for it to come back`);
    if (!(await this.endpoints.waitForAny(endpoints, run.outageUntil, run.task.signal))) return false;
    run.excluded.clear();
    return true;
  }

  private outageLimitMs(run: Completion): number {
    return Math.min(this.endpoints.outageWaitMs, run.options.timeout_seconds * 1000);
  }

  /** ENDPOINT_UNREACHABLE after the wait: the connection failure, how long it waited, and what to do. */
  private stillAway(run: Completion, error: unknown): unknown {
    if (!isMonitorError(error)) return error;
    const seconds = Math.round(this.outageLimitMs(run) / 100) / 10;
    return new LlmError('ENDPOINT_UNREACHABLE', `${error.message} It did not come back within ${seconds} s.`, {
      hint: `${error.hint ?? 'Start the server.'} Then run the failed prompts again with resume_job (include_failed: true).`,
      cause: error,
    });
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
      // Checked again at run time: the path may have become a symlink pointing elsewhere since submit.
      const real = await resolveInsideRoots(input.file.path, this.options.allowedRoots, { what: 'file' });
      const content = await readFileForPrompt({ ...input.file, path: real }, this.options.maxFileBytes);
      const context = this.endpoints.contextLength(options.model);
      // ~6 bytes a token is a generous lower bound: a file beyond it cannot fit, so do not send it.
      if (context !== undefined && content.length / 6 > context) {
        throw new LlmError('CONTEXT_OVERFLOW', `The file ${input.file.display} (${content.length} characters, ≈${estimateTokens(content)} tokens) is far larger than the model's context (${context} tokens).`, {
          hint:
            input.file.chunks !== undefined
              ? CHUNK_TOO_LARGE_HINT
              : 'Submit it again with chunk: true (or chunk_tokens) to split it into chunks, one task each; {{chunk}} and {{chunks}} give the chunk number and count.',
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

  /** One request: pick an endpoint serving the model, send, and judge the answer. */
  private async attempt(run: Completion): Promise<Outcome> {
    const { task, options } = run;
    const found = await this.endpoints.candidatesFor(options.model, run.discovery, task.signal);
    // No list known at all (the server was down when asked): let the request itself find out.
    const candidates = found.endpoints.length > 0 ? found.endpoints : found.unverified;
    if (candidates.length === 0) {
      const error = found.error ?? new LlmError('MODEL_NOT_FOUND', `No endpoint serves model "${options.model}".`);
      // A cached list may be out of date: look again once before giving up, without waiting.
      if (run.discovery === 'cached') {
        run.discovery = 'fresh';
        return { kind: 'again' };
      }
      return { kind: 'retry', error };
    }
    // Every endpoint serving the model refused connections just now: wait for one with the other
    // tasks (one shared probe) rather than send a request each.
    const first = candidates[0];
    if (first !== undefined && candidates.every((e) => this.endpoints.isAway(e))) {
      return { kind: 'away', endpoints: candidates, error: this.endpoints.awayError(first) };
    }
    let choices = candidates.filter((e) => !run.excluded.has(e));
    if (choices.length === 0) {
      run.excluded.clear();
      choices = candidates;
    }
    const lease = await this.endpoints.router.acquire(choices, task.signal);
    run.lastEndpoint = lease.endpoint;
    const timeoutMs = options.timeout_seconds * 1000;
    const deadline = new Deadline(timeoutMs, [task.signal], () =>
      new MonitorError('TIMEOUT', `No complete answer from ${lease.endpoint} within ${options.timeout_seconds} s.`, {
        hint: 'Raise timeout_seconds, lower max_tokens, or send less per prompt.',
      }),
    );
    let answer: ChatAnswer | undefined;
    let failed: unknown;
    run.requests++;
    try {
      const client = this.endpoints.client(lease.endpoint);
      const params: Parameters<typeof client.chat>[0] = { model: found.served[lease.endpoint] ?? options.model, messages: run.conversation };
      if (options.temperature !== undefined) params.temperature = options.temperature;
      if (options.max_tokens !== undefined) params.maxTokens = options.max_tokens;
      if (options.stop !== undefined) params.stop = options.stop;
      if (options.seed !== undefined) params.seed = options.seed;
      if (options.json_schema !== undefined) params.jsonSchema = options.json_schema;
      answer = await client.chat(params, { signal: deadline.signal, timeoutMs });
    } catch (caught) {
      failed = deadline.expired ? deadline.signal.reason : caught;
    } finally {
      // The slot is free before anything else happens (backoff, failover, reading a model list).
      deadline.clear();
      lease.release();
    }
    if (answer === undefined) {
      if (task.signal.aborted) throw task.signal.reason;
      if (answeredStatus(failed) !== undefined) this.endpoints.noteReachable(lease.endpoint);
      return this.afterRequestFailure(run, lease.endpoint, candidates, failed);
    }
    this.endpoints.noteReachable(lease.endpoint);
    return this.judge(run, lease.endpoint, answer);
  }

  /**
   * A request that failed: another endpoint at once after a connection failure, else a wait for
   * the endpoints to come back (nothing listening there), else retry (or fail).
   */
  private async afterRequestFailure(run: Completion, endpoint: string, candidates: readonly string[], error: unknown): Promise<Outcome> {
    if (isConnectionFailure(error)) {
      this.endpoints.router.markDown(endpoint, DOWN_FOR_MS);
      run.excluded.add(endpoint);
      const away = isEndpointAway(error) && isMonitorError(error);
      if (away) this.endpoints.noteUnreachable(endpoint, error);
      // Another endpoint serving the model takes it at once, without backoff.
      if (candidates.some((e) => !run.excluded.has(e)) && run.failovers < candidates.length) {
        run.failovers++;
        this.endpoints.log.debug(`task ${run.task.index} of ${run.task.jobId}: ${endpoint} unreachable, failing over`);
        return { kind: 'failover' };
      }
      if (away) return { kind: 'away', endpoints: [...candidates], error };
    }
    if (isMonitorError(error) && error.code === 'MODEL_NOT_FOUND') return { kind: 'retry', error: await this.endpoints.explainUnknownModel(endpoint, error, run.task.signal) };
    return { kind: 'retry', error };
  }

  /** An answer came back: empty, off-schema (one corrective retry) or good. */
  private async judge(run: Completion, endpoint: string, answer: ChatAnswer): Promise<Outcome> {
    const { task, options } = run;
    addUsage(run.usage, answer, run.conversation);
    const split = splitReasoning(answer.content, answer.reasoning);
    const truncated = answer.finishReason === 'length';
    const meta: Record<string, unknown> = {
      model: answer.model,
      endpoint,
      finish_reason: answer.finishReason,
      truncated,
      tokens_in: run.usage.promptTokens,
      tokens_out: run.usage.completionTokens,
      duration_ms: Math.round(answer.durationMs),
    };
    if (answer.ttftMs !== undefined) meta.ttft_ms = Math.round(answer.ttftMs);
    if (run.usage.estimated) meta.tokens_estimated = true;
    if (run.requests > 1) meta.requests = run.requests;

    if (split.answer.length === 0) {
      if (split.reasoning.length > 0 && truncated) {
        const error = new LlmError('EMPTY_ANSWER', `The model spent all ${options.max_tokens ?? 'its'} max_tokens reasoning and gave no answer.`, {
          hint: 'Raise max_tokens (reasoning models need room to think before they answer).',
        });
        return { kind: 'fail', error, extra: meta };
      }
      const error = new LlmError('EMPTY_ANSWER', `Endpoint ${endpoint} returned an empty answer (finish_reason ${answer.finishReason ?? 'none'}).`, {
        hint: 'It was tried once more. Check the prompt and the server log; an empty answer can mean the prompt overflowed the context.',
        retryable: true,
      });
      return { kind: 'retry', error, extra: meta };
    }

    let json: unknown;
    if (options.json_schema !== undefined) {
      const check = this.options.schemas.check(options.json_schema, split.answer);
      if (!check.ok) {
        if (!run.schemaRetried) {
          run.schemaRetried = true;
          run.conversation = [
            ...run.messages,
            { role: 'assistant', content: split.answer },
            { role: 'user', content: `That answer does not match the required JSON schema: ${check.error}. Reply again with only the JSON value, matching this schema exactly:\n${JSON.stringify(options.json_schema)}` },
          ];
          return { kind: 'again' };
        }
        const raw = await this.keep(task, split.answer, 'answer');
        const error = new LlmError('SCHEMA_INVALID', `The answer does not match json_schema, also after one corrective retry: ${check.error}.${truncated ? ' It was cut off by max_tokens.' : ''}`, {
          hint: truncated ? 'Raise max_tokens so the JSON can be completed.' : 'Simplify the schema or the prompt, or try a stronger model. The raw answer is in `text`.',
        });
        const failed = failure(run, error, { ...meta, ...raw.inline });
        return { kind: 'done', result: raw.file === undefined ? failed : { ...failed, files: { answer: raw.file } } };
      }
      json = check.value;
    }

    const value: Record<string, unknown> = { ...run.base };
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
    const result: TaskResult = { ok: true, value };
    if (Object.keys(files).length > 0) result.files = files;
    return { kind: 'done', result };
  }

  /**
   * Writes the whole text to the task's output file (collect_results may cut long values to fit a
   * page; the file always has everything) and returns the inline part, cut at the configured cap.
   */
  private async keep(task: TaskContext, text: string, kind: 'answer' | 'reasoning'): Promise<{ inline: Record<string, unknown>; file?: string }> {
    const field = kind === 'answer' ? 'text' : 'reasoning';
    const cap = this.options.maxInlineChars;
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

/** For a chunk that overflowed: the generic hint (pass chunk: true) is what the caller already did. */
const CHUNK_TOO_LARGE_HINT =
  'This chunk was still too large for the model\'s context: submit the file again with a smaller chunk_tokens (half the size the submit\'s note gave), a shorter template or system prompt, or a lower max_tokens; or load the model with a larger context length.';

/** A failed task's result: its fields, the model, what it spent (tokens, requests) and where. */
function failure(run: Completion, error: unknown, extra: Record<string, unknown> = {}): TaskResult {
  const value: Record<string, unknown> = { ...run.base, model: run.options.model, ...extra, requests: run.requests };
  if (run.lastEndpoint !== undefined) value.endpoint ??= run.lastEndpoint;
  // Tokens spent on attempts that failed still count in the job's totals.
  if (run.usage.promptTokens + run.usage.completionTokens > 0) {
    value.tokens_in = run.usage.promptTokens;
    value.tokens_out = run.usage.completionTokens;
  }
  const taskError = toTaskError(error);
  // The generic hint says to chunk: a chunk that still overflowed needs smaller chunks instead.
  if (taskError.code === 'CONTEXT_OVERFLOW' && run.chunked) {
    taskError.hint = CHUNK_TOO_LARGE_HINT;
  }
  return { ok: false, error: taskError, value };
}

/** The task's own fields in its value (its id is its label, kept with the result). */
function describeInput(input: LlmTaskInput): Record<string, unknown> {
  const base: Record<string, unknown> = {};
  if ('file' in input && input.file) {
    base.file = input.file.display;
    if (input.file.chunks !== undefined && input.file.chunks > 1) base.chunk = `${input.file.chunk ?? 1}/${input.file.chunks}`;
  }
  return base;
}

/** Adds the server's token counts, or an estimate (flagged) when it sent none. */
function addUsage(usage: Completion['usage'], answer: ChatAnswer, conversation: readonly ChatMessage[]): void {
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
