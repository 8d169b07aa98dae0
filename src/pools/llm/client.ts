import { Pool, type Dispatcher } from 'undici';
import type { EndpointConfig } from '../../config.js';
import { MonitorError } from '../../errors.js';
import { SseParser } from './sse.js';
import type { ChatAnswer, ChatParams, ModelInfo } from './types.js';
import { extractUpstreamError, transportError, upstreamError, type UpstreamContext } from './upstream.js';

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
  /** Models this endpoint listed, for error messages. */
  knownModels?: readonly string[];
}

/** Bodies of error answers and model lists are small; answers are bounded by max_tokens, this is the backstop. */
const MAX_JSON_BYTES = 32 * 1024 * 1024;
const MAX_ERROR_BYTES = 64 * 1024;

/**
 * One OpenAI-compatible server: chat completions (streamed or not), model lists and, on LM Studio,
 * model loading. Maps every error shape to a MonitorError. Holds one undici Pool (keep-alive,
 * `concurrency + 1` connections: one spare for model lists while every slot generates).
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

  constructor(options: EndpointClientOptions) {
    this.endpoint = options.endpoint;
    this.token = options.token;
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

  /** Created on first use, so building the server does no I/O and holds no sockets. */
  private get pool(): Dispatcher {
    this.dispatcher ??= new Pool(this.origin, {
      connections: this.endpoint.concurrency + 1,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      headersTimeout: this.requestTimeoutMs,
      bodyTimeout: this.requestTimeoutMs,
      connect: { timeout: Math.min(10_000, this.requestTimeoutMs) },
    });
    return this.dispatcher;
  }

  private context(model?: string, knownModels?: readonly string[]): UpstreamContext {
    const ctx: UpstreamContext = { endpoint: this.endpoint, tokenSent: this.token !== undefined };
    if (model !== undefined) ctx.model = model;
    if (knownModels !== undefined) ctx.knownModels = knownModels;
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
        // after 100 requests, most servers after a few idle seconds): send again on a fresh one.
        if (attempt === 0 && isStaleConnection(error)) continue;
        throw transportError(error, ctx, 'connect');
      }
    }
  }

  /** Reads a whole body as text, refusing more than `limit` bytes. */
  private async readText(response: Dispatcher.ResponseData, ctx: UpstreamContext, signal: AbortSignal, limit: number): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body) {
        const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
        size += buffer.length;
        if (size > limit) {
          abandon(response.body);
          throw new MonitorError('RESPONSE_TOO_LARGE', `Endpoint ${this.name} sent more than ${limit} bytes.`);
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
  private async readJson(response: Dispatcher.ResponseData, ctx: UpstreamContext, signal: AbortSignal): Promise<unknown> {
    const ok = response.statusCode >= 200 && response.statusCode < 300;
    const text = await this.readText(response, ctx, signal, ok ? MAX_JSON_BYTES : MAX_ERROR_BYTES);
    let parsed: unknown;
    try {
      parsed = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const error = extractUpstreamError(parsed);
    if (error) throw upstreamError(response.statusCode, error, ctx, retryAfterSeconds(response));
    if (!ok) throw upstreamError(response.statusCode, { message: text.slice(0, 500) || `HTTP ${response.statusCode}` }, ctx, retryAfterSeconds(response));
    if (parsed === undefined) {
      throw new MonitorError('UPSTREAM_ERROR', `Endpoint ${this.name} sent a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`, {
        hint: 'Check that the endpoint URL points at an OpenAI-compatible server (base address, without /v1).',
      });
    }
    return parsed;
  }

  /** One chat completion. Streams when configured; a server that answers JSON anyway is read as JSON. */
  async chat(params: ChatParams, options: ChatCallOptions): Promise<ChatAnswer> {
    const ctx = this.context(params.model, options.knownModels);
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const body: Record<string, unknown> = { model: params.model, messages: params.messages, stream: this.stream };
    if (this.stream) body.stream_options = { include_usage: true };
    if (params.temperature !== undefined) body.temperature = params.temperature;
    if (params.maxTokens !== undefined) body.max_tokens = params.maxTokens;
    if (params.stop !== undefined && params.stop.length > 0) body.stop = params.stop;
    if (params.seed !== undefined) body.seed = params.seed;
    if (params.jsonSchema !== undefined) {
      body.response_format = { type: 'json_schema', json_schema: { name: 'result', strict: true, schema: params.jsonSchema } };
    }
    const started = performance.now();
    const response = await this.send('POST', '/v1/chat/completions', body, ctx, options.signal, timeoutMs, this.stream ? 'sse' : 'json');
    const contentType = String(response.headers['content-type'] ?? '');
    if (this.stream && response.statusCode === 200 && contentType.includes('text/event-stream')) {
      return this.readStream(response, ctx, options.signal, started, params.model);
    }
    const json = await this.readJson(response, ctx, options.signal);
    return answerFromCompletion(json, params.model, performance.now() - started, this.name);
  }

  private async readStream(response: Dispatcher.ResponseData, ctx: UpstreamContext, signal: AbortSignal, started: number, requested: string): Promise<ChatAnswer> {
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
      } catch {
        throw new MonitorError('UPSTREAM_ERROR', `Endpoint ${this.name} sent a stream event that is not JSON: ${JSON.stringify(data.slice(0, 200))}`);
      }
      const error = extractUpstreamError(parsed);
      if (error || event === 'error') throw upstreamError(200, error ?? { message: data.slice(0, 500) }, ctx);
      if (typeof parsed !== 'object' || parsed === null) return;
      sawChunk = true;
      const chunk = parsed as StreamChunk;
      if (typeof chunk.model === 'string' && chunk.model.length > 0) model = chunk.model;
      const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
      const delta = choice?.delta;
      const piece = typeof delta?.content === 'string' ? delta.content : '';
      const thought = typeof delta?.reasoning_content === 'string' ? delta.reasoning_content : typeof delta?.reasoning === 'string' ? delta.reasoning : '';
      if ((piece || thought) && ttftMs === undefined) ttftMs = performance.now() - started;
      if (piece) content.push(piece);
      if (thought) reasoning.push(thought);
      size += piece.length + thought.length;
      if (size > MAX_JSON_BYTES) throw new MonitorError('RESPONSE_TOO_LARGE', `Endpoint ${this.name} streamed more than ${MAX_JSON_BYTES} characters.`);
      if (typeof choice?.finish_reason === 'string') finishReason = choice.finish_reason;
      const usage = chunk.usage;
      if (usage && typeof usage === 'object') {
        if (typeof usage.prompt_tokens === 'number') promptTokens = usage.prompt_tokens;
        if (typeof usage.completion_tokens === 'number') completionTokens = usage.completion_tokens;
      }
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
      const tokens = content.length + reasoning.length;
      if (!sawChunk) {
        throw new MonitorError('EMPTY_ANSWER', `Endpoint ${this.name} closed the stream without sending anything.`, {
          hint: 'LM Studio does this when the prompt overflows the context on some GGUF models; try chunk: true or a shorter prompt. It was retried once.',
          retryable: true,
        });
      }
      throw new MonitorError('UPSTREAM_ERROR', `The stream from endpoint ${this.name} ended mid-answer (after ${tokens} pieces, no finish_reason).`, {
        hint: 'Usually transient (server restarted or evicted the model); it was retried. If it persists, check the server log.',
        retryable: true,
      });
    }
    const answer: ChatAnswer = { content: content.join(''), reasoning: reasoning.join(''), model, finishReason, durationMs: performance.now() - started };
    if (promptTokens !== undefined) answer.promptTokens = promptTokens;
    if (completionTokens !== undefined) answer.completionTokens = completionTokens;
    if (ttftMs !== undefined) answer.ttftMs = ttftMs;
    return answer;
  }

  /** The models this endpoint serves: LM Studio's `/api/v0/models` (type, state, context), else `/v1/models`. */
  async models(signal: AbortSignal, timeoutMs = Math.min(this.requestTimeoutMs, 10_000)): Promise<ModelInfo[]> {
    const ctx = this.context();
    if (this.endpoint.flavor === 'lmstudio') {
      const response = await this.send('GET', '/api/v0/models', undefined, ctx, signal, timeoutMs);
      if (response.statusCode !== 404) {
        try {
          return parseLmStudioModels(await this.readJson(response, ctx, signal));
        } catch (error) {
          // Older builds or an LM Studio-flavoured config pointing elsewhere: fall back to /v1.
          if (!(error instanceof MonitorError) || error.code === 'AUTH_REQUIRED' || error.code === 'ENDPOINT_UNREACHABLE') throw error;
        }
      } else {
        abandon(response.body);
      }
    }
    const response = await this.send('GET', '/v1/models', undefined, ctx, signal, timeoutMs);
    return parseOpenAiModels(await this.readJson(response, ctx, signal));
  }

  /**
   * Asks LM Studio to load a model (REST v1, 0.4+). Returns false when this server has no such
   * endpoint, so the caller can warm the model up with a one-token request instead.
   */
  async loadModel(model: string, signal: AbortSignal): Promise<boolean> {
    const ctx = this.context(model);
    const response = await this.send('POST', '/api/v1/models/load', { model }, ctx, signal, this.requestTimeoutMs);
    if (response.statusCode === 404 || response.statusCode === 405) {
      abandon(response.body);
      return false;
    }
    try {
      await this.readJson(response, ctx, signal);
    } catch (error) {
      if (error instanceof MonitorError && /unexpected endpoint/i.test(error.message)) return false;
      throw error;
    }
    return true;
  }

  async close(): Promise<void> {
    const dispatcher = this.dispatcher;
    this.dispatcher = undefined;
    if (dispatcher && this.ownsDispatcher) await dispatcher.destroy().catch(() => undefined);
  }
}

function isStaleConnection(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}

/** Drops a body we will not read: closes its connection without an unhandled 'error' event. */
function abandon(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

interface StreamChunk {
  model?: unknown;
  choices?: Array<{ delta?: { content?: unknown; reasoning_content?: unknown; reasoning?: unknown }; finish_reason?: unknown }>;
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
}

interface CompletionBody {
  model?: unknown;
  choices?: Array<{ message?: { content?: unknown; reasoning_content?: unknown; reasoning?: unknown }; finish_reason?: unknown }>;
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
}

function retryAfterSeconds(response: Dispatcher.ResponseData): number | undefined {
  const value = response.headers['retry-after'];
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

function answerFromCompletion(json: unknown, requested: string, durationMs: number, endpoint: string): ChatAnswer {
  const body = (typeof json === 'object' && json !== null ? json : {}) as CompletionBody;
  const choice = Array.isArray(body.choices) ? body.choices[0] : undefined;
  if (!choice) {
    throw new MonitorError('UPSTREAM_ERROR', `Endpoint ${endpoint} answered without choices: ${JSON.stringify(json).slice(0, 300)}`, {
      hint: 'Check that the endpoint is an OpenAI-compatible chat completions server.',
    });
  }
  const message = choice.message ?? {};
  const reasoning = typeof message.reasoning_content === 'string' ? message.reasoning_content : typeof message.reasoning === 'string' ? message.reasoning : '';
  const answer: ChatAnswer = {
    content: typeof message.content === 'string' ? message.content : '',
    reasoning,
    model: typeof body.model === 'string' && body.model.length > 0 ? body.model : requested,
    finishReason: typeof choice.finish_reason === 'string' ? choice.finish_reason : null,
    durationMs,
  };
  if (typeof body.usage?.prompt_tokens === 'number') answer.promptTokens = body.usage.prompt_tokens;
  if (typeof body.usage?.completion_tokens === 'number') answer.completionTokens = body.usage.completion_tokens;
  return answer;
}

function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

function listOf(json: unknown, key: string): unknown[] {
  if (typeof json !== 'object' || json === null) return [];
  const value = (json as Record<string, unknown>)[key];
  return Array.isArray(value) ? value : [];
}

/** LM Studio `/api/v0/models`: id, type, state, max_context_length, loaded_context_length. */
export function parseLmStudioModels(json: unknown): ModelInfo[] {
  const models: ModelInfo[] = [];
  for (const item of listOf(json, 'data')) {
    if (typeof item !== 'object' || item === null) continue;
    const m = item as Record<string, unknown>;
    if (typeof m.id !== 'string') continue;
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

/** `/v1/models` of any OpenAI-compatible server; llama-server adds `meta.n_ctx`, vLLM `max_model_len`. */
export function parseOpenAiModels(json: unknown): ModelInfo[] {
  const models: ModelInfo[] = [];
  for (const item of listOf(json, 'data')) {
    if (typeof item !== 'object' || item === null) continue;
    const m = item as Record<string, unknown>;
    if (typeof m.id !== 'string') continue;
    const info: ModelInfo = { id: m.id };
    const meta = typeof m.meta === 'object' && m.meta !== null ? (m.meta as Record<string, unknown>) : {};
    const context = positive(meta.n_ctx) ?? positive(m.max_model_len) ?? positive(m.context_length) ?? positive(m.context_window);
    if (context !== undefined) info.contextLength = context;
    const trained = positive(meta.n_ctx_train);
    if (trained !== undefined) info.maxContextLength = trained;
    models.push(info);
  }
  return models;
}
