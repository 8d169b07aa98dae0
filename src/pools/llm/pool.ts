import { mkdir, open, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import type { JobTotals, Pool, TaskContext, TaskResult, UpstreamView } from '../../engine/types.js';
import { isMonitorError, MonitorError, toTaskError } from '../../errors.js';
import { type PathRules, resolveInsideRoots } from '../../paths.js';
import { shortLabel } from '../kind.js';
import { provenanceOf, wholeOutput } from '../../store/result.js';
import { decideRetry, type RetryPolicy, sleep } from '../retry.js';
import { Deadline } from './deadline.js';
import { DOWN_FOR_MS, type Endpoints } from './endpoints.js';
import { LlmError } from './errors.js';
import { splitReasoning } from './reasoning.js';
import type { SchemaValidator } from './schema.js';
import { type Ask, piecesOf, treeReduce } from './reduce.js';
import { estimateTokens, middleBreak, placeholdersOf, readFileForPrompt, renderTemplate } from './template.js';
import type {
  ChatAnswer,
  ChatMessage,
  FileRef,
  LlmJobOptions,
  LlmTaskInput,
  ReduceTaskInput,
  TemplateTaskInput,
} from './types.js';
import {
  answeredStatus,
  isConnectionFailure,
  isEndpointAway,
  retriedOnlyOnce,
  retryAfterMs,
  retryAfterTooLong,
} from './upstream.js';

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
  z.object({ id: z.string(), reduce: z.literal(true) }),
  z.object({ id: z.string(), upstream: z.literal(true) }),
  z.object({
    id: z.string(),
    values: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
    file: fileRefSchema.optional(),
    files: z.array(fileRefSchema).min(1).optional(),
  }),
]);
const reduceSchema = z.object({
  prompt: z.string(),
  max_tokens: z.number().int().optional(),
  context_tokens: z.number().int().positive(),
  bytes_per_token: z.number().positive(),
  parallel: z.number().int().positive(),
});
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
  reduce: reduceSchema.optional(),
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
  if (!parsed.success)
    throw new MonitorError(
      'INVALID_INPUT',
      `The stored ${what} of this task is not valid: ${parsed.error.issues[0]?.message ?? 'unknown'}`,
    );
  return parsed.data;
}

export interface LlmPoolOptions {
  endpoints: Endpoints;
  schemas: SchemaValidator;
  allowedRoots: readonly string[];
  /** How this system compares paths (Linux's when not given). */
  pathRules?: PathRules;
  maxRetries: number;
  maxFileBytes: number;
  maxInlineChars: number;
}

/** One task's way through its attempts: what it has spent and tried so far. */
interface Completion {
  task: TaskContext;
  /** Names the task's output files: its index, or a part of it (a split half, a reduce step). */
  stem: string;
  options: LlmJobOptions;
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
        fields: {
          tokens: { prompt: totals.prompt, completion: totals.completion, completion_per_second: rate ?? null },
        },
        text: `${totals.prompt + totals.completion} tokens processed locally (${totals.prompt} in, ${totals.completion} out${rate === undefined ? '' : ` at ${rate} tok/s out`})`,
      };
    },
  };

  /** Each endpoint's slots, queue and tokens/s, for the live dashboard. */
  liveFigures(): unknown {
    return { endpoints: this.endpoints.liveFigures() };
  }

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
    if ('reduce' in input) return this.reduce(task, options);
    return this.prompt(task, options, input, String(task.index), 0);
  }

  /** One prompt; one whose files overflow the context is split in two and each half asked (up to MAX_SPLIT_DEPTH times). */
  private async prompt(
    task: TaskContext,
    options: LlmJobOptions,
    input: Exclude<LlmTaskInput, ReduceTaskInput>,
    stem: string,
    depth: number,
  ): Promise<TaskResult> {
    const base = describeInput(input);
    let result: TaskResult;
    try {
      const messages = await this.buildMessages(options, input, task.upstream);
      result = await this.complete(task, options, messages, base, stem);
    } catch (error) {
      if (task.signal.aborted) throw error;
      result = { ok: false, error: toTaskError(error), value: base };
    }
    if (result.ok || result.error?.code !== 'CONTEXT_OVERFLOW' || !('file' in input || 'files' in input)) return result;
    const halves =
      depth < MAX_SPLIT_DEPTH
        ? await splitForContext(input, this.options.allowedRoots, this.options.pathRules)
        : undefined;
    if (halves) {
      this.endpoints.log.debug(
        `task ${task.index} of ${task.jobId}: ${input.id} overflowed the context, splitting it in two`,
      );
      result = await this.splitRun(task, options, halves, stem, depth, base);
    }
    const hint = overflowHint(input);
    if (!result.ok && result.error?.code === 'CONTEXT_OVERFLOW' && hint !== undefined) result.error.hint = hint;
    return result;
  }

  /** The halves of a prompt that overflowed, asked one after the other; their answers joined, each labelled. */
  private async splitRun(
    task: TaskContext,
    options: LlmJobOptions,
    halves: readonly TemplateTaskInput[],
    stem: string,
    depth: number,
    base: Record<string, unknown>,
  ): Promise<TaskResult> {
    const parts: TaskResult[] = [];
    for (const [i, half] of halves.entries()) {
      const part = await this.prompt(task, options, half, `${stem}.p${i + 1}`, depth + 1);
      parts.push(part);
      if (!part.ok) break;
    }
    const spent = sumUsage(parts.map((part) => part.value));
    const value: Record<string, unknown> = {
      ...base,
      model: options.model,
      split_for_context: halves.length,
      ...spent,
    };
    const failedAt = parts.findIndex((part) => !part.ok);
    const failed = parts[failedAt];
    if (failed) {
      const error = failed.error ?? { code: 'INTERNAL', message: 'A part failed without an error.' };
      // Only the outermost split says so: the innermost failure's own message follows.
      const message =
        depth > 0
          ? error.message
          : `Split in two to fit the model's context, part ${failedAt + 1} (${halves[failedAt]?.id ?? ''}) failed: ${error.message.replace(/^Split in two to fit the model's context, part \d \([^)]*\) failed: /, '')}`;
      return { ok: false, value, error: { ...error, message } };
    }
    const texts = await Promise.all(parts.map((part) => wholeOutput(part, this.options.maxFileBytes)));
    const joined = texts
      .map((text, i) => `[part ${i + 1} of ${halves.length}: ${halves[i]?.id ?? ''}]\n${text.text}`)
      .join('\n\n');
    const kept = await this.keep(task, stem, joined, 'answer');
    const result: TaskResult = { ok: true, value: { ...kept.inline, ...value } };
    if (kept.file !== undefined) result.files = { answer: kept.file };
    return result;
  }

  /** A reduce stage's task: merges its upstream's answers on the model (see treeReduce). */
  private async reduce(task: TaskContext, options: LlmJobOptions): Promise<TaskResult> {
    const reduce = options.reduce;
    if (!reduce || !task.upstream)
      return {
        ok: false,
        error: { code: 'INTERNAL', message: 'A reduce task ran without its reduce options or its upstream results.' },
      };
    const pieces = await piecesOf(task.upstream.records, this.options.maxFileBytes);
    const step: LlmJobOptions = { ...options };
    delete step.json_schema;
    delete step.template;
    const answers: Array<Record<string, unknown> | undefined> = [];
    const ask: Ask = async (messages, stem, maxTokens) => {
      const result = await this.complete(
        task,
        { ...step, max_tokens: maxTokens },
        options.system ? [{ role: 'system', content: options.system }, ...messages] : messages,
        {},
        stem,
      );
      const value = (result.value ?? {}) as Record<string, unknown>;
      answers.push(value);
      if (!result.ok)
        return {
          ok: false,
          error: result.error ?? { code: 'INTERNAL', message: 'A reduce step failed without an error.' },
          value,
        };
      return { ok: true, text: (await wholeOutput(result, this.options.maxFileBytes)).text, value };
    };
    const outcome = await treeReduce(pieces, reduce, ask, path.join(task.outputDir, `${task.index}.reduce`));
    const summary: Record<string, unknown> = {
      inputs: outcome.inputs,
      failed_inputs: outcome.failedInputs.slice(0, 50),
      levels: outcome.levels,
      requests: outcome.requests,
      model: options.model,
      ...sumUsage(answers),
    };
    if (outcome.failedInputs.length > 50) summary.failed_inputs_more = outcome.failedInputs.length - 50;
    if (outcome.reused > 0) summary.reused_steps = outcome.reused;
    if (!outcome.result.ok) return { ok: false, error: outcome.result.error, value: summary };
    const kept = await this.keep(task, String(task.index), outcome.result.text, 'answer');
    const result: TaskResult = { ok: true, value: { ...kept.inline, ...summary } };
    if (kept.file !== undefined) result.files = { answer: kept.file };
    return result;
  }

  /** Asks the model `messages` until an answer or a final failure: routing, failover, retries, schema checks. */
  private async complete(
    task: TaskContext,
    options: LlmJobOptions,
    messages: ChatMessage[],
    base: Record<string, unknown>,
    stem: string,
  ): Promise<TaskResult> {
    const run: Completion = {
      task,
      stem,
      options,
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
      if (outcome.kind === 'fail' || !this.mayRetry(run, outcome.error))
        return failure(run, outcome.error, outcome.extra);
      const decision = decideRetry(run.retries, this.policy, retryAfterMs(outcome.error));
      if (!decision.retry) {
        const error =
          decision.reason === 'retry-after-too-long' && isMonitorError(outcome.error)
            ? retryAfterTooLong(outcome.error, decision.retryAfterMs, this.policy.maxRetryAfterMs)
            : outcome.error;
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
    this.endpoints.log.debug(
      `task ${run.task.index} of ${run.task.jobId}: ${endpoints.join(', ')} not taking connections, waiting for it to come back`,
    );
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

  private async buildMessages(
    options: LlmJobOptions,
    input: Exclude<LlmTaskInput, ReduceTaskInput>,
    upstream: UpstreamView | undefined,
  ): Promise<ChatMessage[]> {
    const system: ChatMessage[] = options.system ? [{ role: 'system', content: options.system }] : [];
    if ('messages' in input) {
      return input.messages[0]?.role === 'system' ? input.messages : [...system, ...input.messages];
    }
    if (options.template === undefined)
      throw new MonitorError('INVALID_INPUT', 'This job has template inputs but no template.');
    if ('upstream' in input)
      return [...system, { role: 'user', content: await this.fillFromUpstream(options.template, upstream) }];
    const values: Record<string, string> = {};
    for (const [key, value] of Object.entries(input.values ?? {})) values[key] = String(value);
    const files = input.files ?? (input.file ? [input.file] : []);
    const texts: string[] = [];
    for (const file of files) {
      // Checked again at run time: the path may have become a symlink pointing elsewhere since submit.
      const real = await resolveInsideRoots(file.path, this.options.allowedRoots, {
        what: 'file',
        rules: this.options.pathRules,
      });
      texts.push(await readFileForPrompt({ ...file, path: real }, this.options.maxFileBytes));
    }
    const content = input.files
      ? input.files.map((file, i) => `### ${partName(file)}\n${texts[i] ?? ''}`).join('\n\n')
      : (texts[0] ?? '');
    const context = this.endpoints.contextLength(options.model);
    // ~6 bytes a token is a generous lower bound: content beyond it cannot fit, so do not send it.
    if (files.length > 0 && context !== undefined && content.length / 6 > context) {
      const what = input.files
        ? `The ${input.files.length} files of ${input.id}`
        : `The file ${input.file?.display ?? ''}`;
      throw new LlmError(
        'CONTEXT_OVERFLOW',
        `${what} (${content.length} characters, ≈${estimateTokens(content)} tokens) is far larger than the model's context (${context} tokens).`,
        {
          hint:
            overflowHint(input) ??
            'Submit it again with chunk: true (or chunk_tokens) to split it into chunks, one task each; {{chunk}} and {{chunks}} give the chunk number and count.',
        },
      );
    }
    if (input.files) {
      values.path = commonFolder(input.files.map((file) => file.display));
      values.name = `${input.files.length} file(s)`;
      values.content = content;
      values.chunk = '1';
      values.chunks = '1';
    } else if (input.file) {
      values.path = input.file.display;
      values.name = path.basename(input.file.display);
      values.content = content;
      values.chunk = String(input.file.chunk ?? 1);
      values.chunks = String(input.file.chunks ?? 1);
    }
    return [...system, { role: 'user', content: renderTemplate(options.template, values) }];
  }

  /**
   * A later stage's prompt: {{output}} is the upstream task's whole output, {{id}} what it worked on,
   * and each top-level field of a JSON output fills the placeholder of its name.
   */
  private async fillFromUpstream(template: string, upstream: UpstreamView | undefined): Promise<string> {
    const record = upstream?.records[0];
    if (!upstream || !record)
      throw new MonitorError('INTERNAL', 'A task of a later stage ran without its upstream result.');
    const output = await wholeOutput(record, this.options.maxFileBytes);
    const values: Record<string, string> = {};
    if (output.json !== null && typeof output.json === 'object' && !Array.isArray(output.json)) {
      for (const [key, value] of Object.entries(output.json as Record<string, unknown>))
        values[key] = typeof value === 'string' ? value : JSON.stringify(value);
    }
    values.output = output.text;
    values.id = provenanceOf(record);
    const missing = placeholdersOf(template).filter((name) => values[name] === undefined);
    if (missing.length > 0) {
      throw new MonitorError(
        'INVALID_INPUT',
        `The template uses {{${missing.join('}}, {{')}}}, which the output of ${values.id} (task #${record.index} of job ${upstream.jobId}) does not have.`,
        {
          hint: `Available: {{output}} (the whole output), {{id}}, and the top-level fields of a JSON output: ${
            Object.keys(values)
              .filter((k) => k !== 'output' && k !== 'id')
              .join(', ') || 'none here'
          }.`,
        },
      );
    }
    return renderTemplate(template, values);
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
    const deadline = new Deadline(
      timeoutMs,
      [task.signal],
      () =>
        new MonitorError('TIMEOUT', `No complete answer from ${lease.endpoint} within ${options.timeout_seconds} s.`, {
          hint: 'Raise timeout_seconds, lower max_tokens, or send less per prompt.',
        }),
    );
    let answer: ChatAnswer | undefined;
    let failed: unknown;
    run.requests++;
    try {
      const client = this.endpoints.client(lease.endpoint);
      const params: Parameters<typeof client.chat>[0] = {
        model: found.served[lease.endpoint] ?? options.model,
        messages: run.conversation,
      };
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
  private async afterRequestFailure(
    run: Completion,
    endpoint: string,
    candidates: readonly string[],
    error: unknown,
  ): Promise<Outcome> {
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
    if (isMonitorError(error) && error.code === 'MODEL_NOT_FOUND')
      return { kind: 'retry', error: await this.endpoints.explainUnknownModel(endpoint, error, run.task.signal) };
    return { kind: 'retry', error };
  }

  /** An answer came back: empty, off-schema (one corrective retry) or good. */
  private async judge(run: Completion, endpoint: string, answer: ChatAnswer): Promise<Outcome> {
    const { task, options } = run;
    addUsage(run.usage, answer, run.conversation);
    this.endpoints.noteTokens(endpoint, answer.completionTokens ?? 0);
    if (answer.promptTokens !== undefined)
      this.endpoints.noteUsage(
        endpoint,
        options.model,
        run.conversation.reduce((n, m) => n + Buffer.byteLength(m.content), 0),
        answer.promptTokens,
      );
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
        const error = new LlmError(
          'EMPTY_ANSWER',
          `The model spent all ${options.max_tokens ?? 'its'} max_tokens reasoning and gave no answer.`,
          {
            hint: 'Raise max_tokens (reasoning models need room to think before they answer).',
          },
        );
        return { kind: 'fail', error, extra: meta };
      }
      const error = new LlmError(
        'EMPTY_ANSWER',
        `Endpoint ${endpoint} returned an empty answer (finish_reason ${answer.finishReason ?? 'none'}).`,
        {
          hint: 'It was tried once more. Check the prompt and the server log; an empty answer can mean the prompt overflowed the context.',
          retryable: true,
        },
      );
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
            {
              role: 'user',
              content: `That answer does not match the required JSON schema: ${check.error}. Reply again with only the JSON value, matching this schema exactly:\n${JSON.stringify(options.json_schema)}`,
            },
          ];
          return { kind: 'again' };
        }
        const raw = await this.keep(task, run.stem, split.answer, 'answer');
        const error = new LlmError(
          'SCHEMA_INVALID',
          `The answer does not match json_schema, also after one corrective retry: ${check.error}.${truncated ? ' It was cut off by max_tokens.' : ''}`,
          {
            hint: truncated
              ? 'Raise max_tokens so the JSON can be completed.'
              : 'Simplify the schema or the prompt, or try a stronger model. The raw answer is in `text`.',
          },
        );
        const failed = failure(run, error, { ...meta, ...raw.inline });
        return { kind: 'done', result: raw.file === undefined ? failed : { ...failed, files: { answer: raw.file } } };
      }
      json = check.value;
    }

    const value: Record<string, unknown> = { ...run.base };
    const files: Record<string, string> = {};
    const kept = await this.keep(task, run.stem, split.answer, 'answer');
    if (kept.file !== undefined) files.answer = kept.file;
    if (json !== undefined) value.json = json;
    else Object.assign(value, kept.inline);
    if (options.include_reasoning && split.reasoning.length > 0) {
      const reasoning = await this.keep(task, run.stem, split.reasoning, 'reasoning');
      if (reasoning.file !== undefined) files.reasoning = reasoning.file;
      Object.assign(value, reasoning.inline);
    }
    Object.assign(value, meta);
    if (answer.durationMs > 0 && answer.completionTokens !== undefined)
      value.tokens_per_second = Math.round(answer.completionTokens / (answer.durationMs / 1000));
    const result: TaskResult = { ok: true, value };
    if (Object.keys(files).length > 0) result.files = files;
    return { kind: 'done', result };
  }

  /**
   * Writes the whole text to the task's output file (collect_results may cut long values to fit a
   * page; the file always has everything) and returns the inline part, cut at the configured cap.
   */
  private async keep(
    task: TaskContext,
    stem: string,
    text: string,
    kind: 'answer' | 'reasoning',
  ): Promise<{ inline: Record<string, unknown>; file?: string }> {
    const field = kind === 'answer' ? 'text' : 'reasoning';
    const cap = this.options.maxInlineChars;
    const inline =
      text.length <= cap ? { [field]: text } : { [field]: `${text.slice(0, cap)}…`, [`${field}_cut`]: true };
    // collect_results never cuts a result below 512 characters: short answers need no file.
    if (text.length <= SHORT_TEXT_CHARS) return { inline };
    const file = path.join(task.outputDir, `${stem}.${kind}.txt`);
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

/**
 * What to change when `input` overflowed the context, where the generic hint (pass chunk: true)
 * would not do: a chunk already is one (it needs smaller chunks), and a pack (group) takes no chunk
 * options, so what is left is the room around its files. Undefined for a whole file or a prompt.
 */
function overflowHint(input: LlmTaskInput): string | undefined {
  if ('files' in input && input.files) return PACK_TOO_LARGE_HINT;
  if ('file' in input && input.file?.chunks !== undefined) return CHUNK_TOO_LARGE_HINT;
  return undefined;
}

const CHUNK_TOO_LARGE_HINT =
  "This chunk was still too large for the model's context: submit the file again with a smaller chunk_tokens (half the size the submit's note gave), a shorter template or system prompt, or a lower max_tokens; or load the model with a larger context length.";

/** A failed task's result: its fields, the model, what it spent (tokens, requests) and where. */
function failure(run: Completion, error: unknown, extra: Record<string, unknown> = {}): TaskResult {
  const value: Record<string, unknown> = { ...run.base, model: run.options.model, ...extra, requests: run.requests };
  if (run.lastEndpoint !== undefined) value.endpoint ??= run.lastEndpoint;
  // Tokens spent on attempts that failed still count in the job's totals.
  if (run.usage.promptTokens + run.usage.completionTokens > 0) {
    value.tokens_in = run.usage.promptTokens;
    value.tokens_out = run.usage.completionTokens;
  }
  return { ok: false, error: toTaskError(error), value };
}

const PACK_TOO_LARGE_HINT =
  "Even split into 8 parts this did not fit the model's context: shorten the template or system prompt, lower max_tokens, or load the model with a larger context length; or leave this file out of the group and send it alone with chunk: true.";

/** A prompt's files are split in two at most this many times over (8 parts) when they overflow the context. */
const MAX_SPLIT_DEPTH = 3;

/** The task's own fields in its value (its id is its label, kept with the result). */
function describeInput(input: LlmTaskInput): Record<string, unknown> {
  const base: Record<string, unknown> = {};
  if ('files' in input && input.files) base.files = input.files.map(partName);
  if ('file' in input && input.file) {
    base.file = input.file.display;
    if (input.file.chunks !== undefined && input.file.chunks > 1)
      base.chunk = `${input.file.chunk ?? 1}/${input.file.chunks}`;
  }
  return base;
}

/** A file or its chunk, as a packed prompt's header names it. */
function partName(file: FileRef): string {
  if (file.chunks !== undefined && file.chunks > 1)
    return `${file.display} (part ${file.chunk ?? 1} of ${file.chunks})`;
  if (
    file.start !== undefined &&
    file.end !== undefined &&
    file.size !== undefined &&
    (file.start > 0 || file.end < file.size)
  )
    return `${file.display} (bytes ${file.start}–${file.end} of ${file.size})`;
  return file.display;
}

/** The folder the files share, for {{path}} of a packed prompt. */
function commonFolder(displays: readonly string[]): string {
  const split = displays.map((display) => display.split('/').slice(0, -1));
  const first = split[0] ?? [];
  let length = first.length;
  for (const parts of split) {
    let same = 0;
    while (same < length && parts[same] === first[same]) same++;
    length = same;
  }
  return length === 0 ? '.' : first.slice(0, length).join('/');
}

/** Tokens and requests spent by several answers (their values), summed. */
function sumUsage(values: ReadonlyArray<unknown>): Record<string, number> {
  const sum = { tokens_in: 0, tokens_out: 0, requests: 0 };
  for (const value of values) {
    const v = value as { tokens_in?: unknown; tokens_out?: unknown; requests?: unknown } | undefined;
    if (typeof v?.tokens_in === 'number') sum.tokens_in += v.tokens_in;
    if (typeof v?.tokens_out === 'number') sum.tokens_out += v.tokens_out;
    sum.requests += typeof v?.requests === 'number' ? v.requests : 1;
  }
  return sum;
}

/**
 * A prompt's files cut in two: a pack by its files, a lone file (or chunk) at the line break nearest
 * its middle. Undefined when there is nothing left to cut.
 */
async function splitForContext(
  input: TemplateTaskInput,
  roots: readonly string[],
  rules?: PathRules,
): Promise<[TemplateTaskInput, TemplateTaskInput] | undefined> {
  const files = input.files ?? (input.file ? [input.file] : []);
  if (files.length > 1) {
    const mid = Math.ceil(files.length / 2);
    const halves = [files.slice(0, mid), files.slice(mid)];
    return [halves[0] ?? [], halves[1] ?? []].map((part, i) => ({
      ...input,
      id: `${input.id} [part ${i + 1}/2]`,
      files: part,
    })) as [TemplateTaskInput, TemplateTaskInput];
  }
  const [file] = files;
  if (!file) return undefined;
  const real = await resolveInsideRoots(file.path, roots, { what: 'file', rules });
  const size = (await stat(real)).size;
  const start = file.start ?? 0;
  const end = file.end ?? size;
  if (end - start < 256) return undefined;
  const handle = await open(real, 'r');
  let cut: number;
  try {
    const buffer = Buffer.alloc(end - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    cut = start + middleBreak(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
  const half = (from: number, to: number, i: number): TemplateTaskInput => {
    const ref: FileRef = { ...file, start: from, end: to, size };
    const part: TemplateTaskInput = { id: `${input.id} [part ${i}/2]` };
    if (input.values !== undefined) part.values = input.values;
    if (input.files) part.files = [ref];
    else part.file = ref;
    return part;
  };
  return [half(start, cut, 1), half(cut, end, 2)];
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
