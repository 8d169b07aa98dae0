import { buildConnector, Pool, type Dispatcher } from 'undici';
import * as z from 'zod';
import { MonitorError } from '../../errors.js';
import { parseRetryAfter } from '../retry.js';
import { LlmError } from './errors.js';
import type { EndpointConfig } from './settings.js';
import { isStrictCompatible } from './schema.js';
import { SseParser } from './sse.js';
import type { ChatAnswer, ChatParams, ModelInfo } from './types.js';
import {
  CLOSED_CODES,
  errorCodeOf,
  extractUpstreamError,
  redactSecret,
  transportError,
  UpstreamAnswerError,
  upstreamError,
  type UpstreamContext,
} from './upstream.js';

export interface EndpointClientOptions {
  endpoint: EndpointConfig;
  /** Bearer token, read from the environment by the caller; never stored anywhere else. */
  token?: string;
  /** Upper bound for any single wait on this endpoint (headers, or silence between body chunks). */
  requestTimeoutMs: number;
  /** Stream answers (SSE): detects a reset mid-answer and measures time to first token. */
  stream: boolean;
  /** Injected for tests; by default one keep-alive undici Pool per endpoint. */
  dispatcher?: Dispatcher;
}

export interface ChatCallOptions {
  signal: AbortSignal;
  /** Overrides requestTimeoutMs for this call. */
  timeoutMs?: number;
}

/** Bodies of error answers and model lists are small; answers are bounded by max_tokens, this is the backstop. */
const MAX_JSON_BYTES = 32 * 1024 * 1024;
const MAX_ERROR_BYTES = 64 * 1024;
/**
 * A kept-alive connection the server had already closed fails at once. A failure later than this
 * means the server took the request and went away while working on it: no blind resend then.
 */
const STALE_CONNECTION_MS = 100;

// Response shapes, loose: unknown fields pass, a field of the wrong type reads as absent.
const maybeText = z.string().nullish().catch(undefined);
const maybeNumber = z.number().nullish().catch(undefined);
const usageSchema = z
  .looseObject({ prompt_tokens: maybeNumber, completion_tokens: maybeNumber })
  .nullish()
  .catch(undefined);
const textFields = { content: maybeText, reasoning_content: maybeText, reasoning: maybeText };
const completionSchema = z.looseObject({
  model: maybeText,
  choices: z
    .array(z.looseObject({ message: z.looseObject(textFields).nullish().catch(undefined), finish_reason: maybeText }))
    .nullish()
    .catch(undefined),
  usage: usageSchema,
});
const streamChunkSchema = z.looseObject({
  model: maybeText,
  choices: z
    .array(z.looseObject({ delta: z.looseObject(textFields).nullish().catch(undefined), finish_reason: maybeText }))
    .nullish()
    .catch(undefined),
  usage: usageSchema,
});
const listSchema = z.looseObject({ data: z.array(z.unknown()) });
const lmStudioModelSchema = z.looseObject({
  id: z.string(),
  type: maybeText,
  state: maybeText,
  loaded_context_length: maybeNumber,
  max_context_length: maybeNumber,
});
const openAiModelSchema = z.looseObject({
  id: z.string(),
  meta: z.looseObject({ n_ctx: maybeNumber, n_ctx_train: maybeNumber }).nullish().catch(undefined),
  max_model_len: maybeNumber,
  context_length: maybeNumber,
  context_window: maybeNumber,
});

/**
 * One OpenAI-compatible server: chat completions (streamed or not) and model lists (LM Studio's
 * native list where there is one). Maps every error shape to a MonitorError. Holds one undici Pool
 * (keep-alive, `concurrency + 1` connections: one spare for model lists while every slot generates).
 */
export class EndpointClient {
  readonly endpoint: EndpointConfig;
  private readonly token: string | undefined;
  private readonly requestTimeoutMs: number;
  private readonly stream: boolean;
  private readonly prefix: string;
  private readonly origin: string;
  private dispatcher: Dispatcher | undefined;
  private readonly ownsDispatcher: boolean;
  private closed = false;
  /** Connections opened so far: a request during which none opened ran on a reused one. */
  private connects = 0;

  constructor(options: EndpointClientOptions) {
    this.endpoint = options.endpoint;
    // An empty value (mcp.json passes `LM_API_TOKEN: "${LM_API_TOKEN:-}"`) means no token, and so
    // does that template left as it is by a client that expands no variables.
    const token = options.token?.trim();
    this.token = token && !/^\$\{[^}]*\}$/.test(token) ? token : undefined;
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.stream = options.stream;
    const url = new URL(options.endpoint.url);
    this.origin = url.origin;
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.dispatcher = options.dispatcher;
    this.ownsDispatcher = options.dispatcher === undefined;
  }

  get name(): string {
    return this.endpoint.name;
  }

  get hasToken(): boolean {
    return this.token !== undefined;
  }

  /** Created on first use, so building the server does no I/O and holds no sockets; never again after close(). */
  private get pool(): Dispatcher {
    if (this.closed)
      throw new MonitorError(
        'SHUTTING_DOWN',
        `The client of endpoint ${this.name} is closed (the server is shutting down).`,
      );
    if (!this.dispatcher) {
      const connector = buildConnector({ timeout: Math.min(10_000, this.requestTimeoutMs) });
      this.dispatcher = new Pool(this.origin, {
        connections: this.endpoint.concurrency + 1,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 600_000,
        headersTimeout: this.requestTimeoutMs,
        bodyTimeout: this.requestTimeoutMs,
        connect: (options, callback) => {
          this.connects++;
          connector(options, callback);
        },
      });
    }
    return this.dispatcher;
  }

  private context(model?: string): UpstreamContext {
    const ctx: UpstreamContext = { endpoint: this.endpoint, tokenSent: this.token !== undefined };
    if (this.token !== undefined) ctx.secret = this.token;
    if (model !== undefined) ctx.model = model;
    return ctx;
  }

  private headers(json: boolean): Record<string, string> {
    const headers: Record<string, string> = { accept: json ? 'application/json' : 'text/event-stream' };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  /** Sends one request; rejects with a mapped MonitorError, or with the signal's reason once it aborted. */
  private async send(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    ctx: UpstreamContext,
    signal: AbortSignal,
    timeoutMs: number,
    accept: 'json' | 'sse' = 'json',
  ): Promise<Dispatcher.ResponseData> {
    const headers = this.headers(accept === 'json');
    if (body !== undefined) headers['content-type'] = 'application/json';
    const payload = body === undefined ? null : JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
      const connectsBefore = this.connects;
      const started = performance.now();
      try {
        return await this.pool.request({
          origin: this.origin,
          path: this.prefix + path,
          method,
          headers,
          body: payload,
          signal,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        // A kept-alive connection the server closed just as we reused it (llama-server closes one
        // after 100 requests, most servers after a few idle seconds) fails at once: send again on a
        // fresh one. Anything else (a fresh connection, or a failure while the server was working)
        // goes back to the caller, which retries with backoff.
        const code = errorCodeOf(error);
        const reused = this.connects === connectsBefore;
        if (
          attempt === 0 &&
          reused &&
          code !== undefined &&
          CLOSED_CODES.has(code) &&
          performance.now() - started < STALE_CONNECTION_MS
        )
          continue;
        throw transportError(error, ctx, 'request');
      }
    }
  }

  /** Reads a whole body as text, refusing more than `limit` bytes. */
  private async readText(
    response: Dispatcher.ResponseData,
    ctx: UpstreamContext,
    signal: AbortSignal,
    limit: number,
  ): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body) {
        const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
        size += buffer.length;
        if (size > limit) {
          abandon(response.body);
          throw new LlmError('RESPONSE_TOO_LARGE', `Endpoint ${this.name} sent more than ${limit} bytes.`);
        }
        chunks.push(buffer);
      }
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw transportError(error, ctx, 'answer');
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Parses a JSON answer; any `error` in it (whatever the status) becomes a MonitorError. */
  private async readJson(
    response: Dispatcher.ResponseData,
    ctx: UpstreamContext,
    signal: AbortSignal,
  ): Promise<unknown> {
    const status = response.statusCode;
    const ok = status >= 200 && status < 300;
    const text = await this.readText(response, ctx, signal, ok ? MAX_JSON_BYTES : MAX_ERROR_BYTES);
    let parsed: unknown;
    try {
      parsed = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const error = extractUpstreamError(parsed);
    const retryAfter = parseRetryAfter(headerText(response.headers['retry-after']));
    if (error) throw upstreamError(status, error, ctx, retryAfter);
    if (!ok) throw upstreamError(status, { message: text.slice(0, 500) || `HTTP ${status}` }, ctx, retryAfter);
    if (text.trim().length === 0) {
      // A hiccup, not a wrong URL (a wrong path gets an error body, even from LM Studio): worth retrying.
      throw new UpstreamAnswerError(
        'UPSTREAM_ERROR',
        `Endpoint ${this.name} answered status ${status} with an empty body (no JSON at all).`,
        status,
        {
          hint: 'A server hiccup (seen under load, or while the server swaps models); it was retried with backoff. If it keeps happening, check the server log and that the model is loaded, then run the failed prompts again with resume_job (include_failed: true).',
          retryable: true,
        },
      );
    }
    if (parsed === undefined) {
      throw new UpstreamAnswerError(
        'UPSTREAM_ERROR',
        `Endpoint ${this.name} sent a body that is not JSON: ${JSON.stringify(redactSecret(text.slice(0, 200), ctx.secret))}`,
        status,
        {
          hint: 'Check that the endpoint URL points at an OpenAI-compatible server (base address, without /v1).',
        },
      );
    }
    return parsed;
  }

  /** One chat completion. Streams when configured; a server that answers JSON anyway is read as JSON. */
  async chat(params: ChatParams, options: ChatCallOptions): Promise<ChatAnswer> {
    const ctx = this.context(params.model);
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const body: Record<string, unknown> = { model: params.model, messages: params.messages, stream: this.stream };
    if (this.stream) body.stream_options = { include_usage: true };
    if (params.temperature !== undefined) body.temperature = params.temperature;
    if (params.maxTokens !== undefined) body.max_tokens = params.maxTokens;
    if (params.stop !== undefined && params.stop.length > 0) body.stop = params.stop;
    if (params.seed !== undefined) body.seed = params.seed;
    if (params.jsonSchema !== undefined) {
      // LM Studio turns any schema into a grammar; OpenAI's strict mode refuses schemas outside its
      // subset (400 for the whole job), so strict goes only where it is safe.
      const strict = this.endpoint.flavor === 'lmstudio' || isStrictCompatible(params.jsonSchema);
      body.response_format = {
        type: 'json_schema',
        json_schema: { name: 'result', ...(strict ? { strict: true } : {}), schema: params.jsonSchema },
      };
    }
    const started = performance.now();
    const response = await this.send(
      'POST',
      '/v1/chat/completions',
      body,
      ctx,
      options.signal,
      timeoutMs,
      this.stream ? 'sse' : 'json',
    );
    const contentType = headerText(response.headers['content-type']) ?? '';
    if (this.stream && response.statusCode === 200 && contentType.includes('text/event-stream')) {
      return this.readStream(response, ctx, options.signal, started, params.model);
    }
    const json = await this.readJson(response, ctx, options.signal);
    return answerFromCompletion(json, params.model, performance.now() - started, this.name, response.statusCode);
  }

  private async readStream(
    response: Dispatcher.ResponseData,
    ctx: UpstreamContext,
    signal: AbortSignal,
    started: number,
    requested: string,
  ): Promise<ChatAnswer> {
    const parser = new SseParser();
    const content: string[] = [];
    const reasoning: string[] = [];
    let size = 0;
    let model = requested;
    let finishReason: string | null = null;
    let promptTokens: number | undefined;
    let completionTokens: number | undefined;
    let ttftMs: number | undefined;
    let done = false;
    let sawChunk = false;

    const handle = (data: string, event: string): void => {
      if (data === '[DONE]') {
        done = true;
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(data);
      } catch (error) {
        throw new UpstreamAnswerError(
          'UPSTREAM_ERROR',
          `Endpoint ${this.name} sent a stream event that is not JSON: ${JSON.stringify(redactSecret(data.slice(0, 200), ctx.secret))}`,
          200,
          { cause: error },
        );
      }
      const error = extractUpstreamError(parsed);
      if (error || event === 'error') throw upstreamError(200, error ?? { message: data.slice(0, 500) }, ctx);
      const chunk = streamChunkSchema.safeParse(parsed);
      if (!chunk.success) return;
      sawChunk = true;
      if (chunk.data.model) model = chunk.data.model;
      const choice = chunk.data.choices?.[0];
      const delta = choice?.delta;
      const piece = delta?.content ?? '';
      const thought = delta?.reasoning_content || delta?.reasoning || '';
      if ((piece || thought) && ttftMs === undefined) ttftMs = performance.now() - started;
      if (piece) content.push(piece);
      if (thought) reasoning.push(thought);
      size += piece.length + thought.length;
      if (size > MAX_JSON_BYTES)
        throw new LlmError(
          'RESPONSE_TOO_LARGE',
          `Endpoint ${this.name} streamed more than ${MAX_JSON_BYTES} characters.`,
        );
      if (typeof choice?.finish_reason === 'string') finishReason = choice.finish_reason;
      const usage = chunk.data.usage;
      if (typeof usage?.prompt_tokens === 'number') promptTokens = usage.prompt_tokens;
      if (typeof usage?.completion_tokens === 'number') completionTokens = usage.completion_tokens;
    };

    try {
      // Read to the end even after [DONE]: a fully read body keeps the connection reusable.
      for await (const chunk of response.body) {
        if (done) continue;
        const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
        for (const event of parser.push(bytes)) if (!done) handle(event.data, event.event);
      }
      if (!done) for (const event of parser.end()) handle(event.data, event.event);
    } catch (error) {
      abandon(response.body);
      if (signal.aborted) throw signal.reason;
      throw transportError(error, ctx, 'answer');
    }
    // A stream that stops before a finish_reason and without [DONE] lost its connection mid-answer.
    if (!done && finishReason === null) {
      const pieces = content.length + reasoning.length;
      if (!sawChunk) {
        throw new LlmError('EMPTY_ANSWER', `Endpoint ${this.name} closed the stream without sending anything.`, {
          hint: 'LM Studio does this when the prompt overflows the context on some GGUF models; try chunk: true or a shorter prompt. An empty answer is retried once.',
          retryable: true,
        });
      }
      throw new LlmError(
        'UPSTREAM_ERROR',
        `The stream from endpoint ${this.name} ended mid-answer (after ${pieces} pieces, no finish_reason).`,
        {
          hint: 'Usually transient (server restarted or evicted the model); it was retried with backoff. If it persists, check the server log.',
          retryable: true,
        },
      );
    }
    const answer: ChatAnswer = {
      content: content.join(''),
      reasoning: reasoning.join(''),
      model,
      finishReason,
      durationMs: performance.now() - started,
    };
    if (promptTokens !== undefined) answer.promptTokens = promptTokens;
    if (completionTokens !== undefined) answer.completionTokens = completionTokens;
    if (ttftMs !== undefined) answer.ttftMs = ttftMs;
    return answer;
  }

  /**
   * The models this endpoint serves: LM Studio's `/api/v0/models` (type, state, context), else (or
   * when that answers without a list) `/v1/models`.
   */
  async models(signal: AbortSignal, timeoutMs = Math.min(this.requestTimeoutMs, 10_000)): Promise<ModelInfo[]> {
    const ctx = this.context();
    if (this.endpoint.flavor === 'lmstudio') {
      const response = await this.send('GET', '/api/v0/models', undefined, ctx, signal, timeoutMs);
      if (response.statusCode !== 404) {
        try {
          const models = parseLmStudioModels(await this.readJson(response, ctx, signal));
          if (models !== undefined) return models;
        } catch (error) {
          // Older builds or an LM Studio-flavoured config pointing elsewhere: fall back to /v1.
          if (
            !(error instanceof MonitorError) ||
            error.code === 'AUTH_REQUIRED' ||
            error.code === 'ENDPOINT_UNREACHABLE'
          )
            throw error;
        }
      } else {
        abandon(response.body);
      }
    }
    const response = await this.send('GET', '/v1/models', undefined, ctx, signal, timeoutMs);
    const json = await this.readJson(response, ctx, signal);
    const models = parseOpenAiModels(json);
    if (models === undefined) {
      throw new UpstreamAnswerError(
        'UPSTREAM_ERROR',
        `Endpoint ${this.name} answered /v1/models without a model list: ${JSON.stringify(json).slice(0, 200)}`,
        response.statusCode,
        {
          hint: 'Check that the endpoint URL points at an OpenAI-compatible server (base address, without /v1).',
        },
      );
    }
    return models;
  }

  /**
   * How many tokens `text` makes with the served model's own tokenizer, where the server can tell
   * (`POST /tokenize`: llama-server takes `content`, vLLM `prompt`); undefined where it cannot
   * (LM Studio's REST API has no such route) or does not answer in time.
   */
  async countTokens(text: string, model: string, signal: AbortSignal, timeoutMs = 5000): Promise<number | undefined> {
    if (this.endpoint.flavor === 'lmstudio') return undefined;
    const ctx = this.context(model);
    try {
      const response = await this.send(
        'POST',
        '/tokenize',
        { content: text, prompt: text, model },
        ctx,
        signal,
        timeoutMs,
      );
      if (response.statusCode < 200 || response.statusCode >= 300) {
        abandon(response.body);
        return undefined;
      }
      const json = (await this.readJson(response, ctx, signal)) as { tokens?: unknown; count?: unknown } | undefined;
      if (typeof json?.count === 'number' && json.count >= 0) return json.count;
      return Array.isArray(json?.tokens) ? json.tokens.length : undefined;
    } catch (error) {
      if (signal.aborted) throw error;
      // No counter here (an older server, another route layout): the caller estimates instead.
      return undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const dispatcher = this.dispatcher;
    this.dispatcher = undefined;
    if (dispatcher && this.ownsDispatcher) await dispatcher.destroy().catch(() => undefined);
  }
}

/** Drops a body we will not read: closes its connection without an unhandled 'error' event. */
function abandon(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function answerFromCompletion(
  json: unknown,
  requested: string,
  durationMs: number,
  endpoint: string,
  status: number,
): ChatAnswer {
  const body = completionSchema.safeParse(json);
  const choice = body.success ? body.data.choices?.[0] : undefined;
  if (!body.success || !choice) {
    throw new UpstreamAnswerError(
      'UPSTREAM_ERROR',
      `Endpoint ${endpoint} answered without choices: ${JSON.stringify(json).slice(0, 300)}`,
      status,
      {
        hint: 'Check that the endpoint is an OpenAI-compatible chat completions server.',
      },
    );
  }
  const message = choice.message;
  const answer: ChatAnswer = {
    content: message?.content ?? '',
    reasoning: message?.reasoning_content || message?.reasoning || '',
    model: body.data.model || requested,
    finishReason: choice.finish_reason ?? null,
    durationMs,
  };
  const usage = body.data.usage;
  if (typeof usage?.prompt_tokens === 'number') answer.promptTokens = usage.prompt_tokens;
  if (typeof usage?.completion_tokens === 'number') answer.completionTokens = usage.completion_tokens;
  return answer;
}

function positive(value: number | null | undefined): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

/** The items of `{data: [...]}`, or undefined when the body has no such list. */
function listItems(json: unknown): unknown[] | undefined {
  const list = listSchema.safeParse(json);
  return list.success ? list.data.data : undefined;
}

/** LM Studio `/api/v0/models`: id, type, state, max_context_length, loaded_context_length. Undefined without a list. */
export function parseLmStudioModels(json: unknown): ModelInfo[] | undefined {
  const items = listItems(json);
  if (items === undefined) return undefined;
  const models: ModelInfo[] = [];
  for (const item of items) {
    const parsed = lmStudioModelSchema.safeParse(item);
    if (!parsed.success) continue;
    const m = parsed.data;
    const info: ModelInfo = { id: m.id };
    if (m.type === 'llm' || m.type === 'vlm') info.type = m.type;
    else if (m.type === 'embeddings' || m.type === 'embedding') info.type = 'embeddings';
    if (m.state === 'loaded' || m.state === 'not-loaded') info.state = m.state;
    const loaded = positive(m.loaded_context_length);
    const max = positive(m.max_context_length);
    if (loaded !== undefined) info.contextLength = loaded;
    if (max !== undefined) info.maxContextLength = max;
    models.push(info);
  }
  return models;
}

/** `/v1/models` of any OpenAI-compatible server; llama-server adds `meta.n_ctx`, vLLM `max_model_len`. Undefined without a list. */
export function parseOpenAiModels(json: unknown): ModelInfo[] | undefined {
  const items = listItems(json);
  if (items === undefined) return undefined;
  const models: ModelInfo[] = [];
  for (const item of items) {
    const parsed = openAiModelSchema.safeParse(item);
    if (!parsed.success) continue;
    const m = parsed.data;
    const info: ModelInfo = { id: m.id };
    const context =
      positive(m.meta?.n_ctx) ?? positive(m.max_model_len) ?? positive(m.context_length) ?? positive(m.context_window);
    if (context !== undefined) info.contextLength = context;
    const trained = positive(m.meta?.n_ctx_train);
    if (trained !== undefined) info.maxContextLength = trained;
    models.push(info);
  }
  return models;
}
