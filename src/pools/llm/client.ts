import type { Dispatcher } from 'undici';
import { MonitorError } from '../../errors.js';
import { abandon, headerText, readJson } from './body.js';
import { type Probe, probeServer } from './probe.js';
import { answerFromCompletion } from './responses.js';
import type { EndpointConfig } from './settings.js';
import { isStrictCompatible } from './schema.js';
import type { StreamWatch } from './stall.js';
import { readChatStream } from './stream.js';
import type { ChatAnswer, ChatParams } from './types.js';
import type { ServerFlavor } from './server-facts.js';
import { BusyError, CLOSED_CODES, errorCodeOf, transportError, type UpstreamContext } from './upstream.js';

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
  /** Told when a streamed request starts and as its events come (stall.ts); a non-streamed one only disarms it. */
  watch?: StreamWatch | undefined;
  /**
   * Asked before sending again on a fresh connection after a kept-alive one closed at once: false
   * when the caller's retry budget is spent, true after charging one retry to it (the server may
   * have received the first request). By default the resend is free.
   */
  mayResend?: (() => boolean) | undefined;
}

/**
 * A kept-alive connection the server had already closed fails at once. A failure later than this
 * means the server took the request and went away while working on it: no blind resend then.
 */
const STALE_CONNECTION_MS = 100;

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
  /** What the server turned out to be on its last probe (probe.ts); until then, what the config says. */
  detected: ServerFlavor | undefined;

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

  /** The server's flavour as last detected, else the configured one (a port-1234 guess until it answers). */
  get flavor(): ServerFlavor {
    return this.detected ?? (this.endpoint.flavor === 'lmstudio' ? 'lmstudio' : 'openai');
  }

  /**
   * Created on first use, so building the server does no I/O and holds no sockets; never again
   * after close(). undici is imported then too: loading it costs the server's start ~80 ms.
   */
  private async pool(): Promise<Dispatcher> {
    if (!this.dispatcher && !this.closed) {
      const { buildConnector, Pool } = await import('undici');
      const connector = buildConnector({ timeout: Math.min(10_000, this.requestTimeoutMs) });
      // Checked again after the import: another request may have made it, or close() come meanwhile.
      if (!this.dispatcher && !this.closed)
        this.dispatcher = new Pool(this.origin, {
          // One spare for model lists and probes; with no cap set, the router (the server's slots) bounds it.
          connections: this.endpoint.concurrencyAuto ? null : this.endpoint.concurrency + 1,
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
    if (this.closed || !this.dispatcher)
      throw new MonitorError(
        'SHUTTING_DOWN',
        `The client of endpoint ${this.name} is closed (the server is shutting down).`,
      );
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
    mayResend: () => boolean = () => true,
  ): Promise<Dispatcher.ResponseData> {
    const headers = this.headers(accept === 'json');
    if (body !== undefined) headers['content-type'] = 'application/json';
    const payload = body === undefined ? null : JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
      const connectsBefore = this.connects;
      const started = performance.now();
      try {
        return await (
          await this.pool()
        ).request({
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
        // goes back to the caller, which retries with backoff. The resend is one of the caller's
        // retries: a server that closed after reading the request may have done the work.
        const code = errorCodeOf(error);
        const reused = this.connects === connectsBefore;
        if (
          attempt === 0 &&
          reused &&
          code !== undefined &&
          CLOSED_CODES.has(code) &&
          performance.now() - started < STALE_CONNECTION_MS &&
          mayResend()
        )
          continue;
        throw transportError(error, ctx, 'request');
      }
    }
  }

  /** One chat completion. Streams when configured; a server that answers JSON anyway is read as JSON. */
  async chat(params: ChatParams, options: ChatCallOptions): Promise<ChatAnswer> {
    const ctx = this.context(params.model);
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const body = chatRequestBody(params, this.stream, this.flavor);
    const started = performance.now();
    if (this.stream) options.watch?.arm();
    const response = await this.send(
      'POST',
      '/v1/chat/completions',
      body,
      ctx,
      options.signal,
      timeoutMs,
      this.stream ? 'sse' : 'json',
      options.mayResend,
    );
    const contentType = headerText(response.headers['content-type']) ?? '';
    if (this.stream && response.statusCode === 200 && contentType.includes('text/event-stream')) {
      return readChatStream(response, ctx, options.signal, started, params.model, options.watch);
    }
    // A JSON answer (an error, or a server that does not stream) says nothing until it is whole.
    options.watch?.disarm();
    const json = await readJson(response, ctx, options.signal);
    return answerFromCompletion(json, params.model, performance.now() - started, this.name, response.statusCode);
  }

  /**
   * GET `path` for a probe (probe.ts): its JSON, or undefined where the server has no such route
   * (404, an error answer, a body that is not JSON). Connection failures, refused tokens, timeouts
   * and busy answers reject: they say nothing about which server this is.
   */
  async probe(path: string, signal: AbortSignal, timeoutMs: number, strict = false): Promise<unknown> {
    const ctx = this.context();
    const response = await this.send('GET', path, undefined, ctx, signal, timeoutMs);
    if (strict) return readJson(response, ctx, signal);
    if (response.statusCode === 404) {
      abandon(response.body);
      return undefined;
    }
    try {
      return await readJson(response, ctx, signal);
    } catch (error) {
      if (signal.aborted || !(error instanceof MonitorError) || error instanceof BusyError) throw error;
      if (['AUTH_REQUIRED', 'ENDPOINT_UNREACHABLE', 'TIMEOUT'].includes(error.code)) throw error;
      return undefined;
    }
  }

  /** What the server is and serves (probe.ts); remembers the flavour for the next probe and for requests. */
  async discover(signal: AbortSignal, timeoutMs = Math.min(this.requestTimeoutMs, 10_000)): Promise<Probe> {
    const found = await probeServer(
      (path, strict) => this.probe(path, signal, timeoutMs, strict),
      this.name,
      this.detected,
    );
    this.detected = found.facts.flavor;
    return found;
  }

  /**
   * How many tokens `text` makes with the served model's own tokenizer, where the server can tell
   * (`POST /tokenize`: llama-server takes `content`, vLLM `prompt`); undefined where it cannot
   * (LM Studio's REST API has no such route) or does not answer in time.
   */
  async countTokens(text: string, model: string, signal: AbortSignal, timeoutMs = 5000): Promise<number | undefined> {
    // LM Studio's REST API and Ollama have no such route.
    if (this.flavor === 'lmstudio' || this.flavor === 'ollama') return undefined;
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
      const json = (await readJson(response, ctx, signal)) as { tokens?: unknown; count?: unknown } | undefined;
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

  /** POST a JSON body (model load/unload, lifecycle.ts): the JSON answer, any error answer as a MonitorError. */
  async postJson(
    path: string,
    body: unknown,
    signal: AbortSignal,
    timeoutMs: number,
    model?: string,
  ): Promise<unknown> {
    const ctx = this.context(model);
    const response = await this.send('POST', path, body, ctx, signal, timeoutMs);
    return readJson(response, ctx, signal);
  }
}

/** The body of one `/v1/chat/completions` request. */
function chatRequestBody(params: ChatParams, stream: boolean, flavor: ServerFlavor): Record<string, unknown> {
  const body: Record<string, unknown> = { model: params.model, messages: params.messages, stream };
  if (stream) body.stream_options = { include_usage: true };
  if (params.temperature !== undefined) body.temperature = params.temperature;
  if (params.maxTokens !== undefined) body.max_tokens = params.maxTokens;
  if (params.stop !== undefined && params.stop.length > 0) body.stop = params.stop;
  if (params.seed !== undefined) body.seed = params.seed;
  if (params.tools !== undefined && params.tools.length > 0) {
    body.tools = params.tools;
    if (params.toolChoice !== undefined) body.tool_choice = params.toolChoice;
  }
  if (params.jsonSchema !== undefined) {
    // LM Studio turns any schema into a grammar; OpenAI's strict mode refuses schemas outside its
    // subset (400 for the whole job), so strict goes only where it is safe.
    const strict = flavor === 'lmstudio' || isStrictCompatible(params.jsonSchema);
    body.response_format = {
      type: 'json_schema',
      json_schema: { name: 'result', ...(strict ? { strict: true } : {}), schema: params.jsonSchema },
    };
  }
  // llama-server's own fields: keep the prompt in the slot's cache, and the slot that holds its prefix.
  if (flavor === 'llama-server' && params.prefixCache !== undefined) {
    body.cache_prompt = true;
    if (params.prefixCache.slot !== undefined) body.id_slot = params.prefixCache.slot;
  }
  return body;
}
