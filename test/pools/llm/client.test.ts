import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';
import { toolsRejected } from '../../../src/pools/llm/agent/calls.js';
import { EndpointClient } from '../../../src/pools/llm/client.js';
import type { ChatMessage, ToolSpec } from '../../../src/pools/llm/types.js';
import { type AgentTurn, LmStudioDouble } from '../../fixtures/lmstudio-double.js';
import { failure } from '../../helpers/cleanup.js';

function endpointFor(url: string, extra: Partial<EndpointConfig> = {}): EndpointConfig {
  return { name: 'double', url, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN', ...extra };
}

const signal = (): AbortSignal => AbortSignal.timeout(10_000);
const ask = (
  prompt: string,
  model = 'test-model',
): { model: string; messages: Array<{ role: 'user'; content: string }> } => ({
  model,
  messages: [{ role: 'user', content: prompt }],
});

describe.each([true, false])('EndpointClient against the LM Studio double (stream: %s)', (stream) => {
  let double: LmStudioDouble;
  let client: EndpointClient;

  beforeAll(async () => {
    double = await LmStudioDouble.start({
      models: [
        { id: 'test-model', type: 'llm', state: 'loaded', contextLength: 4096 },
        { id: 'thinker', type: 'llm', state: 'loaded', contextLength: 4096, reasoning: 'reasoning_content' },
        { id: 'gpt-oss', type: 'llm', state: 'loaded', contextLength: 4096, reasoning: 'reasoning' },
        { id: 'nomic-embed', type: 'embeddings', state: 'not-loaded', contextLength: 2048 },
      ],
    });
    client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream });
  });
  afterAll(async () => {
    await client.close();
    await double.close();
  });

  it('gets an answer with usage, model and finish_reason', async () => {
    const answer = await client.chat(ask('hello there'), { signal: signal() });
    expect(answer.content).toBe('Answer to: hello there');
    expect(answer.model).toBe('test-model');
    expect(answer.finishReason).toBe('stop');
    expect(answer.promptTokens).toBeGreaterThan(0);
    expect(answer.completionTokens).toBe(4);
    if (stream) expect(answer.ttftMs).toBeGreaterThanOrEqual(0);
    const sent = double.chatRequests.at(-1)?.body;
    expect(sent?.stream).toBe(stream);
    if (stream) expect(sent?.stream_options).toEqual({ include_usage: true });
  });

  it('flags truncation by max_tokens', async () => {
    const answer = await client.chat({ ...ask('one two three four five six'), maxTokens: 2 }, { signal: signal() });
    expect(answer.finishReason).toBe('length');
    expect(answer.content).toBe('Answer to: ');
  });

  it('reads reasoning_content and gpt-oss reasoning apart from content', async () => {
    const a = await client.chat(ask('why', 'thinker'), { signal: signal() });
    expect(a.reasoning).toBe('Let me think about this step by step.');
    expect(a.content).toBe('Answer to: why');
    const b = await client.chat(ask('why', 'gpt-oss'), { signal: signal() });
    expect(b.reasoning).toBe('Let me think about this step by step.');
  });

  it('sends response_format with the JSON schema', async () => {
    const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
    const answer = await client.chat({ ...ask('count'), jsonSchema: schema }, { signal: signal() });
    expect(JSON.parse(answer.content)).toEqual({ n: 1 });
    // LM Studio takes any schema strictly (as a grammar).
    expect(double.chatRequests.at(-1)?.body?.response_format).toEqual({
      type: 'json_schema',
      json_schema: { name: 'result', strict: true, schema },
    });
  });

  it.each([
    ['no-model', 'MODEL_NOT_LOADED', false],
    ['no-model-string', 'MODEL_NOT_LOADED', false],
    ['context', 'CONTEXT_OVERFLOW', false],
    ['error200', 'CONTEXT_OVERFLOW', false],
    ['error200string', 'UPSTREAM_ERROR', false],
    ['crash', 'UPSTREAM_ERROR', false],
    ['429', 'UPSTREAM_ERROR', true],
    ['503', 'UPSTREAM_ERROR', true],
    ['429-long', 'UPSTREAM_ERROR', true],
    ['500', 'UPSTREAM_ERROR', true],
    ['empty-body', 'UPSTREAM_ERROR', true],
    ['load-error', 'UPSTREAM_ERROR', false],
    ['reset', 'UPSTREAM_ERROR', true],
    ['reset-late', 'UPSTREAM_ERROR', true],
  ])('maps fault %s to %s (retryable: %s)', async (fault, code, retryable) => {
    const error = await failure(client.chat(ask(`#fault:${fault} x${String(stream)}`), { signal: signal() }));
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(retryable);
    expect(error.hint).toBeTruthy();
  });

  it('says an empty 200 body is what it is, not a wrong URL', async () => {
    const error = await failure(client.chat(ask(`#fault:empty-body plain ${String(stream)}`), { signal: signal() }));
    expect(error.message).toMatch(/status 200 with an empty body/);
    expect(error.hint).not.toMatch(/endpoint URL/);
  });

  it('says what the base URL should be when the server does not know the path', async () => {
    const error = await failure(client.chat(ask('#fault:error200string'), { signal: signal() }));
    expect(error.hint).toMatch(/without \/v1/);
  });

  it('lists the available models for an unknown model', async () => {
    const error = await failure(client.chat(ask('hi', 'o4-mini'), { signal: signal() }));
    expect(error.code).toBe('MODEL_NOT_FOUND');
    expect(error.message).toContain('test-model');
    expect(error.message).toContain('o4-mini');
  });

  it('sends once more at once when the connection drops before any answer (stale keep-alive)', async () => {
    // A kept-alive connection to reuse first.
    await client.chat(ask('warm'), { signal: signal() });
    const answer = await client.chat(ask(`#fault:reset*1 stale ${String(stream)}`), { signal: signal() });
    expect(answer.content).toContain('Answer to: #fault:reset*1');
  });

  it('does not resend on a fresh connection when the caller says its retries are spent', async () => {
    await client.chat(ask('warm again'), { signal: signal() });
    const prompt = `#fault:reset*1 spent ${String(stream)}`;
    let asked = 0;
    const mayResend = (): boolean => {
      asked++;
      return false;
    };
    const error = await failure(client.chat(ask(prompt), { signal: signal(), mayResend }));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(asked).toBe(1);
    expect(double.chatRequests.filter((q) => q.prompt === prompt)).toHaveLength(1);
  });

  it('does not resend blindly when the connection closes while the server generates, and does not call the server down', async () => {
    const prompt = `#fault:reset-late once ${String(stream)}`;
    const error = await failure(client.chat(ask(prompt), { signal: signal() }));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/closed before the answer/);
    expect(double.chatRequests.filter((q) => q.prompt === prompt)).toHaveLength(1);
  });

  it('treats a connection reset mid-answer as transient', async () => {
    const error = await failure(client.chat(ask('#fault:reset-mid please'), { signal: signal() }));
    expect(error.code).toBe('UPSTREAM_ERROR');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/mid-answer/);
  });

  it('keeps connections alive: far fewer connections than requests', async () => {
    double.resetStats();
    for (let i = 0; i < 20; i++) await client.chat(ask(`keep-alive ${i}`), { signal: signal() });
    expect(double.chatRequests).toHaveLength(20);
    // undici may open a second connection while the first finishes its answer; never one per request.
    expect(double.connections).toBeLessThanOrEqual(2);
  });

  it('lists LM Studio models with type, state and context', async () => {
    const { models } = await client.discover(signal());
    expect(models).toContainEqual({
      id: 'test-model',
      type: 'llm',
      state: 'loaded',
      contextLength: 4096,
      maxContextLength: 4096,
      parallel: 4,
    });
    expect(models).toContainEqual({
      id: 'nomic-embed',
      type: 'embeddings',
      state: 'not-loaded',
      maxContextLength: 2048,
    });
  });

  it('aborts the request in flight when the signal aborts, and the server sees the disconnect', async () => {
    const before = double.disconnects;
    const controller = new AbortController();
    const pending = client.chat(ask('#fault:hang'), { signal: controller.signal });
    await expect.poll(() => double.inFlight).toBeGreaterThan(0);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    await expect.poll(() => double.disconnects).toBe(before + 1);
  });
});

describe('EndpointClient: stream-only and connection errors', () => {
  it('maps an error event inside a 200 stream', async () => {
    const double = await LmStudioDouble.start();
    const client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream: true });
    try {
      const error = await failure(client.chat(ask('#fault:stream-error'), { signal: signal() }));
      expect(error.code).toBe('UPSTREAM_ERROR');
      expect(error.message).toContain('Model unloaded mid-generation.');
    } finally {
      await client.close();
      await double.close();
    }
  });

  it('asks for the token on 401 without one, and says it was refused with a wrong one', async () => {
    const double = await LmStudioDouble.start({ token: 'sk-lm-good:secret' });
    const without = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream: true });
    const wrong = new EndpointClient({
      endpoint: endpointFor(double.url),
      requestTimeoutMs: 10_000,
      stream: true,
      token: 'sk-lm-bad:nope',
    });
    const right = new EndpointClient({
      endpoint: endpointFor(double.url),
      requestTimeoutMs: 10_000,
      stream: true,
      token: 'sk-lm-good:secret',
    });
    try {
      const missing = await failure(without.chat(ask('hi'), { signal: signal() }));
      expect(missing.code).toBe('AUTH_REQUIRED');
      expect(missing.hint).toContain('LM_API_TOKEN');
      const refused = await failure(wrong.chat(ask('hi'), { signal: signal() }));
      expect(refused.code).toBe('AUTH_REQUIRED');
      expect(refused.hint).toMatch(/refused/);
      // The server echoes the token's first 10 characters; none of it reaches the error.
      expect(refused.message).toContain('Malformed LM Studio API token provided');
      expect(refused.message).not.toMatch(/sk-lm-bad|bad:no/);
      expect((await right.chat(ask('hi'), { signal: signal() })).content).toBe('Answer to: hi');
      expect(double.chatRequests.at(-1)?.authorization).toBe('Bearer sk-lm-good:secret');
      expect((await failure(without.discover(signal()))).code).toBe('AUTH_REQUIRED');
    } finally {
      await Promise.all([without.close(), wrong.close(), right.close()]);
      await double.close();
    }
  });

  it('scrubs any token from server messages, also one that does not look like an LM Studio token', async () => {
    const double = await LmStudioDouble.start({ token: 'right-token-0000' });
    const client = new EndpointClient({
      endpoint: endpointFor(double.url),
      requestTimeoutMs: 10_000,
      stream: false,
      token: 'my-own-secret-123456',
    });
    try {
      const refused = await failure(client.chat(ask('hi'), { signal: signal() }));
      expect(double.chatRequests.at(-1)?.authorization).toBe('Bearer my-own-secret-123456');
      expect(refused.message).toContain('Malformed LM Studio API token provided: [redacted]...');
      expect(refused.message).not.toContain('my-own');
    } finally {
      await client.close();
      await double.close();
    }
  });

  it('sends no Authorization header for an empty token (an unset ${VAR:-} in mcp.json), nor for that template unexpanded', async () => {
    const double = await LmStudioDouble.start();
    for (const token of ['', '${LM_API_TOKEN:-}']) {
      const client = new EndpointClient({
        endpoint: endpointFor(double.url),
        requestTimeoutMs: 10_000,
        stream: false,
        token,
      });
      try {
        await client.chat(ask('hi'), { signal: signal() });
        expect(client.hasToken).toBe(false);
        expect(double.chatRequests.at(-1)?.authorization).toBeUndefined();
      } finally {
        await client.close();
      }
    }
    await double.close();
  });

  it('says how to start LM Studio when nothing listens', async () => {
    // A port that was free a moment ago: bind, read it, close.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const address = probe.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const client = new EndpointClient({
      endpoint: endpointFor(`http://127.0.0.1:${port}`),
      requestTimeoutMs: 5_000,
      stream: true,
    });
    try {
      const error = await failure(client.chat(ask('hi'), { signal: signal() }));
      expect(error.code).toBe('ENDPOINT_UNREACHABLE');
      expect(error.retryable).toBe(true);
      expect(error.hint).toContain('lms server start');
      expect(error.hint).toContain('Developer tab');
    } finally {
      await client.close();
    }
  });

  it('falls back to /v1/models on a server without the LM Studio API, whatever its port says', async () => {
    const double = await LmStudioDouble.start({ flavor: 'openai' });
    const client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream: false });
    try {
      expect((await client.discover(signal())).models).toEqual([{ id: 'test-model' }]);
      const paths = double.requests.map((r) => r.path);
      // Asked at once: the routes only llama-server, LM Studio 0.4 and Ollama answer; then LM Studio 0.3's, then /v1.
      expect(paths.slice(0, 3).sort()).toEqual(['/api/tags', '/api/v1/models', '/props']);
      expect(paths.slice(3)).toEqual(['/api/v0/models', '/v1/models']);
      expect(client.flavor).toBe('openai');
      // The next probe of a known plain server goes straight to the full detection again (it has no route of its own).
      double.resetStats();
      await client.discover(signal());
      expect(double.requests.map((r) => r.path)).toContain('/v1/models');
    } finally {
      await client.close();
      await double.close();
    }
  });

  it('falls back to /v1/models when /api/v0/models answers without a list', async () => {
    const double = await LmStudioDouble.start({ nativeListWithoutData: true, noV1List: true });
    const client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream: false });
    try {
      expect((await client.discover(signal())).models).toEqual([{ id: 'test-model' }]);
      expect(double.requests.map((r) => r.path).slice(3)).toEqual(['/api/v0/models', '/v1/models']);
    } finally {
      await client.close();
      await double.close();
    }
  });

  it('sends strict json_schema to other servers only when the schema is strict-compatible', async () => {
    const double = await LmStudioDouble.start({ flavor: 'openai' });
    const client = new EndpointClient({
      endpoint: endpointFor(double.url, { flavor: 'openai' }),
      requestTimeoutMs: 10_000,
      stream: false,
    });
    try {
      const loose = { type: 'object', properties: { n: { type: 'integer' } } };
      await client.chat({ ...ask('a'), jsonSchema: loose }, { signal: signal() });
      expect(double.chatRequests.at(-1)?.body?.response_format).toEqual({
        type: 'json_schema',
        json_schema: { name: 'result', schema: loose },
      });
      const strict = {
        type: 'object',
        properties: { n: { type: 'integer' } },
        required: ['n'],
        additionalProperties: false,
      };
      await client.chat({ ...ask('b'), jsonSchema: strict }, { signal: signal() });
      expect(double.chatRequests.at(-1)?.body?.response_format).toEqual({
        type: 'json_schema',
        json_schema: { name: 'result', strict: true, schema: strict },
      });
    } finally {
      await client.close();
      await double.close();
    }
  });

  it('opens no connection after close()', async () => {
    const double = await LmStudioDouble.start();
    const client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream: false });
    try {
      await client.discover(signal());
      const { connections } = double;
      const requests = double.requests.length;
      await client.close();
      const late = await failure(client.discover(signal()));
      expect(late.code).toBe('SHUTTING_DOWN');
      expect(double.connections).toBe(connections);
      expect(double.requests).toHaveLength(requests);
    } finally {
      await double.close();
    }
  });
});

describe('EndpointClient.countTokens', () => {
  it("asks /tokenize and reads llama-server's tokens or vLLM's count; undefined where there is no counter", async () => {
    const answers: Record<string, { status: number; body: string }> = {
      '/llama': { status: 200, body: JSON.stringify({ tokens: [1, 2, 3, 4, 5] }) },
      '/vllm': { status: 200, body: JSON.stringify({ count: 7, max_model_len: 4096, tokens: [1, 2, 3, 4, 5, 6, 7] }) },
      '/none': { status: 404, body: JSON.stringify({ error: 'Unexpected endpoint or method. (POST /tokenize)' }) },
    };
    const seen: string[] = [];
    const server = createHttpServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        seen.push(`${request.method ?? ''} ${request.url ?? ''} ${body}`);
        const answer = answers[(request.url ?? '').replace(/\/tokenize$/, '')] ?? { status: 500, body: '{}' };
        response.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const clients: EndpointClient[] = [];
    const count = (where: string, flavor: EndpointConfig['flavor'] = 'openai'): Promise<number | undefined> => {
      const client = new EndpointClient({
        endpoint: endpointFor(`http://127.0.0.1:${port}${where}`, { flavor }),
        requestTimeoutMs: 10_000,
        stream: false,
      });
      clients.push(client);
      return client.countTokens('some text', 'm', signal());
    };
    try {
      expect(await count('/llama')).toBe(5);
      expect(await count('/vllm')).toBe(7);
      expect(await count('/none')).toBeUndefined();
      // LM Studio's REST API has no counter: not even asked.
      expect(await count('/llama', 'lmstudio')).toBeUndefined();
      expect(seen).toHaveLength(3);
      expect(JSON.parse(seen[0]?.split(' ').slice(2).join(' ') ?? '{}')).toEqual({
        content: 'some text',
        prompt: 'some text',
        model: 'm',
      });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe.each([true, false])('EndpointClient: tool calling over HTTP (stream: %s)', (stream) => {
  const tools: ToolSpec[] = [
    {
      type: 'function',
      function: {
        name: 'read_file',
        description: 'Read a file.',
        parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
      },
    },
  ];
  const turns: AgentTurn[] = [];
  let double: LmStudioDouble;
  let client: EndpointClient;

  beforeAll(async () => {
    double = await LmStudioDouble.start({
      agent: (turn) => {
        turns.push(turn);
        if (turn.tools === undefined) return undefined;
        return {
          content: 'Reading both.',
          tool_calls: [
            { name: 'read_file', arguments: { path: 'src/a.ts', note: 'a "quoted" ünïcode 🙂 text' } },
            { name: 'grep', arguments: '{"pattern": "TODO"}' },
          ],
        };
      },
    });
    client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream });
  });
  afterAll(async () => {
    await client.close();
    await double.close();
  });

  it('sends tools and tool_choice, and reads the native calls back with their ids and exact arguments', async () => {
    const answer = await client.chat({ ...ask('find it'), tools, toolChoice: 'auto' }, { signal: signal() });
    const sent = double.chatRequests.at(-1)?.body;
    expect(sent?.tools).toEqual(tools);
    expect(sent?.tool_choice).toBe('auto');
    expect(turns.at(-1)?.tools).toEqual(tools);
    expect(answer.content).toBe('Reading both.');
    expect(answer.finishReason).toBe('tool_calls');
    expect(answer.toolCalls).toEqual([
      {
        id: expect.stringMatching(/^call_/) as unknown,
        name: 'read_file',
        arguments: JSON.stringify({ path: 'src/a.ts', note: 'a "quoted" ünïcode 🙂 text' }),
      },
      { id: expect.stringMatching(/^call_/) as unknown, name: 'grep', arguments: '{"pattern": "TODO"}' },
    ]);
    expect(answer.toolCalls?.[0]?.id).not.toBe(answer.toolCalls?.[1]?.id);
    expect(answer.completionTokens).toBeGreaterThan(0);
    if (stream) expect(answer.ttftMs).toBeGreaterThanOrEqual(0);
  });

  it('streams each call as LM Studio does: an opening delta with id and name, then argument fragments', async () => {
    const response = await fetch(`${double.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...ask('find it'), tools, stream }),
    });
    const text = await response.text();
    if (!stream) {
      expect(JSON.parse(text)).toMatchObject({
        choices: [{ finish_reason: 'tool_calls', message: { role: 'assistant' } }],
      });
      return;
    }
    const deltas = text
      .split('\n\n')
      .filter((line) => line.startsWith('data: {'))
      .map((line) => JSON.parse(line.slice(6)) as { choices: Array<{ delta: { tool_calls?: unknown[] } }> })
      .flatMap((event) => event.choices[0]?.delta.tool_calls ?? []);
    expect(deltas[0]).toMatchObject({
      index: 0,
      id: expect.stringMatching(/^call_/) as unknown,
      type: 'function',
      function: { name: 'read_file', arguments: '' },
    });
    const fragments = deltas.filter(
      (d) => (d as { index?: number; id?: string }).index === 0 && !('id' in (d as object)),
    );
    expect(fragments.length).toBeGreaterThanOrEqual(3);
  });

  it('sends neither tools nor tool_choice without tools; an answer without calls has no toolCalls', async () => {
    const answer = await client.chat({ ...ask('plain'), tools: [], toolChoice: 'required' }, { signal: signal() });
    const sent = double.chatRequests.at(-1)?.body;
    expect(sent).not.toHaveProperty('tools');
    expect(sent).not.toHaveProperty('tool_choice');
    expect(answer.content).toBe('Answer to: plain');
    expect(answer.toolCalls).toBeUndefined();
  });

  it('carries a conversation with tool calls and tool results, counted in the usage', async () => {
    const first = await client.chat({ ...ask('find it'), tools }, { signal: signal() });
    const calls = (first.toolCalls ?? []).map((c) => ({
      id: c.id ?? '',
      type: 'function' as const,
      function: { name: c.name, arguments: c.arguments },
    }));
    const result = 'line\n'.repeat(400);
    const messages: ChatMessage[] = [
      { role: 'user', content: 'find it' },
      { role: 'assistant', content: first.content, tool_calls: calls },
      { role: 'tool', tool_call_id: calls[0]?.id ?? '', content: result },
    ];
    const second = await client.chat({ model: 'test-model', messages, tools }, { signal: signal() });
    expect(turns.at(-1)?.messages).toEqual(messages);
    // The tool result's 2,000 characters count (about 500 tokens at 4 characters a token).
    expect(second.promptTokens).toBeGreaterThan((first.promptTokens ?? 0) + 450);
  });
});

describe('EndpointClient: servers that refuse tools', () => {
  it('answers 400 with the refusal, which toolsRejected recognises; requests without tools still work', async () => {
    for (const rejectTools of ['tools param requires --jinja flag', true] as const) {
      const double = await LmStudioDouble.start({ rejectTools });
      const client = new EndpointClient({ endpoint: endpointFor(double.url), requestTimeoutMs: 10_000, stream: true });
      try {
        const tools: ToolSpec[] = [
          { type: 'function', function: { name: 'grep', description: 'Search.', parameters: { type: 'object' } } },
        ];
        const refused = await failure(client.chat({ ...ask('find it'), tools }, { signal: signal() }));
        expect(refused.message).toContain(rejectTools === true ? 'test-model does not support tools' : rejectTools);
        expect(toolsRejected(refused)).toBe(true);
        const plain = await client.chat(ask('find it'), { signal: signal() });
        expect(plain.content).toBe('Answer to: find it');
        expect(toolsRejected(new Error(plain.content))).toBe(false);
      } finally {
        await client.close();
        await double.close();
      }
    }
  });
});

describe('EndpointClient: streamed tool calls as other servers send them', () => {
  /** A server that streams these events (each a JSON chunk) and ends with [DONE]. */
  async function streaming(events: unknown[]): Promise<{ url: string; close: () => Promise<void> }> {
    const server = createHttpServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const event of events) response.write(`data: ${JSON.stringify(event)}\n\n`);
        response.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    return {
      url: `http://127.0.0.1:${port}`,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
  const delta = (d: Record<string, unknown>, finish: string | null = null): unknown => ({
    choices: [{ index: 0, delta: d, finish_reason: finish }],
  });

  it('puts fragments together by index, without index by id or position, arguments sent as objects, and drops the hostile', async () => {
    const server = await streaming([
      delta({ role: 'assistant', content: null }),
      delta({ tool_calls: [{ index: 1, id: 'b', type: 'function', function: { name: 'grep', arguments: '' } }] }),
      delta({ tool_calls: [{ index: 0, id: 'a', function: { name: 'read_file', arguments: '{"pa' } }] }),
      delta({ tool_calls: [{ index: 0, function: { arguments: 'th": "x"}' } }] }),
      delta({ tool_calls: [{ index: 1, function: { name: 'ignored-later-name', arguments: '{"pattern":' } }] }),
      delta({ tool_calls: [{ index: 1, function: { arguments: ' "y"}' } }] }),
      // Ollama-like whole calls without index, one a JSON object; then garbage fragments.
      delta({ tool_calls: [{ id: 'c', function: { name: 'outline', arguments: { path: 'z.py' } } }] }),
      delta({ tool_calls: [null, 7, 'x', { index: -1, function: 'nope' }, { index: 9, function: { arguments: 5 } }] }),
      delta({ tool_calls: { not: 'a list' } }),
      delta({}, 'tool_calls'),
    ]);
    const client = new EndpointClient({ endpoint: endpointFor(server.url), requestTimeoutMs: 10_000, stream: true });
    try {
      const answer = await client.chat(ask('go'), { signal: signal() });
      expect(answer.finishReason).toBe('tool_calls');
      expect(answer.content).toBe('');
      expect(answer.toolCalls).toEqual([
        { id: 'a', name: 'read_file', arguments: '{"path": "x"}' },
        { id: 'b', name: 'grep', arguments: '{"pattern": "y"}' },
        { id: 'c', name: 'outline', arguments: '{"path":"z.py"}' },
      ]);
    } finally {
      await client.close();
      await server.close();
    }
  });
});
