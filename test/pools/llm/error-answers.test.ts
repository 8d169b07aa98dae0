import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';
import { MonitorError } from '../../../src/errors.js';
import { EndpointClient } from '../../../src/pools/llm/client.js';
import { answeredStatus, retryAfterMs } from '../../../src/pools/llm/upstream.js';

/** One error answer as some server sends it: status, headers and the body text. */
interface Reply {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

interface Case {
  name: string;
  reply: () => Reply;
  code: string;
  retryable: boolean;
  message?: RegExp;
  hint?: RegExp;
  /** Expected Retry-After in ms: [at least, at most]. */
  retryAfter?: [number, number];
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json', ...headers },
});

const cases: Case[] = [
  {
    name: 'Ollama: unknown model, 404 not_found without a list',
    reply: () =>
      json(404, {
        error: { message: 'model "qwen3" not found, try pulling it first', type: 'api_error', param: null, code: null },
      }),
    code: 'MODEL_NOT_FOUND',
    retryable: false,
    message: /does not serve model "m": model "qwen3" not found/,
  },
  {
    name: 'vLLM before 2025: {"object":"error"} for an unknown model',
    reply: () =>
      json(404, {
        object: 'error',
        message: 'The model `gpt-x` does not exist.',
        type: 'NotFoundError',
        param: null,
        code: 404,
      }),
    code: 'MODEL_NOT_FOUND',
    retryable: false,
  },
  {
    name: 'vLLM before 2025: {"object":"error"} for a prompt over the context',
    reply: () =>
      json(400, {
        object: 'error',
        message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
        type: 'BadRequestError',
        param: null,
        code: 400,
      }),
    code: 'CONTEXT_OVERFLOW',
    retryable: false,
  },
  {
    name: 'FastAPI: {"detail": "Not Found"}',
    reply: () => json(404, { detail: 'Not Found' }),
    code: 'UPSTREAM_ERROR',
    retryable: false,
    message: /HTTP 404\): Not Found/,
  },
  {
    name: 'FastAPI: 422 with a list of validation issues',
    reply: () =>
      json(422, { detail: [{ loc: ['body', 'messages'], msg: 'field required', type: 'value_error.missing' }] }),
    code: 'UPSTREAM_ERROR',
    retryable: false,
    message: /field required/,
  },
  {
    name: 'llama-server: exceed_context_size_error',
    reply: () =>
      json(400, {
        error: {
          code: 400,
          message: 'the request exceeds the available context size, try increasing it',
          type: 'exceed_context_size_error',
          n_prompt_tokens: 5000,
          n_ctx: 4096,
        },
      }),
    code: 'CONTEXT_OVERFLOW',
    retryable: false,
    // Its own remedy: a slot's context is -c / --parallel, set when it starts; no "load the model".
    hint: /chunk: true.*; or give each slot more context: llama-server splits its total context -c evenly across its --parallel slots \(this slot holds 4096 tokens\), so restart it with a larger -c or a smaller --parallel\.$/,
  },
  {
    name: 'llama-server: 503 unavailable_error while loading',
    reply: () => json(503, { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } }),
    code: 'UPSTREAM_ERROR',
    retryable: true,
  },
  {
    name: 'a proxy: 502 with an HTML body',
    reply: () => ({
      status: 502,
      body: '<html><body>Bad Gateway</body></html>',
      headers: { 'content-type': 'text/html' },
    }),
    code: 'UPSTREAM_ERROR',
    retryable: true,
    message: /busy or unavailable \(HTTP 502\)/,
  },
  {
    name: 'a proxy: 504 gateway timeout',
    reply: () => ({ status: 504, body: 'Gateway Timeout' }),
    code: 'UPSTREAM_ERROR',
    retryable: true,
  },
  {
    name: '429 with Retry-After as seconds',
    reply: () =>
      json(429, { error: { message: 'Too many requests', type: 'rate_limit_error' } }, { 'retry-after': '2' }),
    code: 'UPSTREAM_ERROR',
    retryable: true,
    retryAfter: [2000, 2000],
  },
  {
    name: '429 with Retry-After as an HTTP date',
    reply: () =>
      json(
        429,
        { error: { message: 'Too many requests' } },
        { 'retry-after': new Date(Date.now() + 6000).toUTCString() },
      ),
    code: 'UPSTREAM_ERROR',
    retryable: true,
    retryAfter: [3000, 7000],
  },
  {
    name: 'LM Studio 0.3.15: 404 "…Your models:" with the list in the message',
    reply: () =>
      json(404, {
        error: {
          message:
            'Model "default" not found. Please specify a valid model.\n\nYour models:\n\nqwen2.5-7b-instruct\nllama-3.2-3b',
          type: 'invalid_request_error',
          param: 'model',
          code: 'model_not_found',
        },
      }),
    code: 'MODEL_NOT_FOUND',
    retryable: false,
    message: /Your models:[\s\S]*qwen2\.5-7b-instruct/,
  },
  {
    name: 'LM Studio: status 200 carrying an error string (unknown path)',
    reply: () => json(200, { error: 'Unexpected endpoint or method. (POST /chat/completions)' }),
    code: 'UPSTREAM_ERROR',
    retryable: false,
    message: /status 200 carrying an error/,
    hint: /without \/v1/,
  },
  {
    name: 'LM Studio: status 200 carrying an error object',
    reply: () =>
      json(200, {
        error: { message: 'Context size has been exceeded.', type: 'invalid_request_error', param: null, code: null },
      }),
    code: 'CONTEXT_OVERFLOW',
    retryable: false,
    hint: /chunk: true.*lower max_tokens, or load the model with a larger context length\.$/,
  },
  {
    name: 'LM Studio: no model loaded, bare string',
    reply: () =>
      json(400, {
        error: "No models loaded. Please load a model in the developer page or use the 'lms load' command.",
      }),
    code: 'MODEL_NOT_LOADED',
    retryable: false,
  },
  {
    name: 'LM Studio: "Error loading model" is a failed load, not a busy server',
    reply: () =>
      json(400, {
        error: {
          message:
            'Error loading model. (Exit code: 18446744072635812000). Unknown error. Try a different model and/or runtime.',
          type: 'invalid_request_error',
        },
      }),
    code: 'UPSTREAM_ERROR',
    retryable: false,
    message: /could not load the model/,
  },
  {
    name: 'LM Studio: the model crashed',
    reply: () => json(400, { error: 'The model has crashed without additional information. (Exit code: 11)' }),
    code: 'UPSTREAM_ERROR',
    retryable: false,
    hint: /Reload the model/,
  },
  {
    name: 'LM Studio: 401 without a token',
    reply: () =>
      json(401, {
        error: {
          type: 'invalid_request',
          code: 'invalid_api_key',
          message: 'An LM Studio API token is required to make requests to this server.',
        },
      }),
    code: 'AUTH_REQUIRED',
    retryable: false,
    hint: /Set LM_API_TOKEN/,
  },
  {
    name: 'hosted OpenAI: a schema strict mode refuses',
    reply: () =>
      json(400, {
        error: {
          message:
            "Invalid schema for response_format 'result': In context=(), 'additionalProperties' is required to be supplied and to be false.",
          type: 'invalid_request_error',
          param: 'response_format',
          code: null,
        },
      }),
    code: 'INVALID_INPUT',
    retryable: false,
    hint: /additionalProperties/,
  },
  {
    // LM Studio's answer when overloaded: retried, once (the pool counts it).
    name: 'a plain-text 500',
    reply: () => ({ status: 500, body: 'Internal Server Error' }),
    code: 'UPSTREAM_ERROR',
    retryable: true,
    message: /HTTP 500\): Internal Server Error/,
    hint: /retried once/,
  },
  {
    name: 'status 200 with an empty body',
    reply: () => ({ status: 200, body: '', headers: { 'content-type': 'application/json' } }),
    code: 'UPSTREAM_ERROR',
    retryable: true,
    message: /status 200 with an empty body/,
    // Counted as an empty answer: retried once, not up to maxRetries.
    hint: /retried once/,
  },
  {
    name: 'status 200 with a body that is not JSON',
    reply: () => ({ status: 200, body: '<html>hello</html>', headers: { 'content-type': 'text/html' } }),
    code: 'UPSTREAM_ERROR',
    retryable: false,
    message: /not JSON/,
  },
];

describe('upstream error answers, as each server really sends them', () => {
  let server: Server;
  let client: EndpointClient;
  let seen = 0;

  beforeAll(async () => {
    // A real HTTP server answering each request with the case its prompt names.
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        seen++;
        const text = Buffer.concat(chunks).toString('utf8');
        const reply =
          cases.find((c) => text.includes(JSON.stringify(c.name).slice(1, -1)))?.reply() ??
          json(500, { error: 'no such case' });
        res.writeHead(reply.status, reply.headers ?? {});
        res.end(reply.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const endpoint: EndpointConfig = {
      name: 'e',
      url: `http://127.0.0.1:${port}`,
      concurrency: 2,
      models: [],
      flavor: 'openai',
      apiKeyEnv: 'LM_API_TOKEN',
    };
    client = new EndpointClient({ endpoint, requestTimeoutMs: 10_000, stream: false });
  });
  afterAll(async () => {
    await client.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it.each(cases)('$name → $code (retryable: $retryable)', async (c) => {
    const before = seen;
    let caught: unknown;
    try {
      await client.chat(
        { model: 'm', messages: [{ role: 'user', content: c.name }] },
        { signal: AbortSignal.timeout(10_000) },
      );
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MonitorError);
    const error = caught instanceof MonitorError ? caught : new MonitorError('INTERNAL', 'unreachable');
    expect(error.code).toBe(c.code);
    expect(error.retryable).toBe(c.retryable);
    expect(error.hint).toBeTruthy();
    // An error answer proves the endpoint is reachable (lmstudio_models and doctor rely on this).
    expect(answeredStatus(error)).toBe(c.reply().status);
    if (c.message) expect(error.message).toMatch(c.message);
    if (c.hint) expect(error.hint).toMatch(c.hint);
    if (c.retryAfter) {
      const wait = retryAfterMs(error) ?? -1;
      expect(wait).toBeGreaterThanOrEqual(c.retryAfter[0]);
      expect(wait).toBeLessThanOrEqual(c.retryAfter[1]);
    }
    // Never resent by the client itself: retries are the pool's decision.
    expect(seen - before).toBe(1);
  });
});
