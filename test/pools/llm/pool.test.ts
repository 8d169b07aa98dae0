import { readFile, rm, stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../../src/registry.js';
import { Engine } from '../../../src/engine/engine.js';
import type { TaskRecord } from '../../../src/engine/types.js';
import { silentLogger } from '../../../src/log.js';
import type { Endpoints } from '../../../src/pools/llm/endpoints.js';
import { createLlmParts } from '../../../src/pools/llm/instance.js';
import { LLM_BACKOFF } from '../../../src/pools/llm/completion.js';
import type { LlmPool } from '../../../src/pools/llm/pool.js';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';
import { backoffMs, retryDelayMs } from '../../../src/pools/retry.js';
import type { LlmJobOptions, LlmTaskInput } from '../../../src/pools/llm/types.js';
import { JobStore } from '../../../src/store/store.js';
import { LmStudioDouble, type DoubleOptions } from '../../fixtures/lmstudio-double.js';
import { testConfig } from '../../helpers/client.js';
import { freePort } from '../../helpers/net.js';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { llmTotals } from '../../../src/pools/llm/totals.js';

interface Rig {
  engine: Engine;
  /** Waits until the job has no queued or running task. */
  settle(jobId: string): Promise<void>;
  service: Endpoints;
  pool: LlmPool;
  config: Config;
  run(
    prompts: string[],
    options?: Partial<LlmJobOptions>,
    concurrency?: number,
  ): Promise<{ jobId: string; records: TaskRecord[] }>;
  submit(prompts: string[], options?: Partial<LlmJobOptions>, concurrency?: number): Promise<string>;
}

const cleanups = cleanupsAfterEach();

async function double(options: DoubleOptions = {}): Promise<LmStudioDouble> {
  const d = await LmStudioDouble.start(options);
  cleanups.push(() => d.close());
  return d;
}

function endpoint(name: string, url: string, concurrency: number, extra: Partial<EndpointConfig> = {}): EndpointConfig {
  return { name, url, concurrency, models: [], flavor: 'lmstudio', ...extra };
}

async function rig(
  endpoints: EndpointConfig[],
  edit: (config: Config) => void = () => {},
  deps: { outageWaitMs?: number } = {},
): Promise<Rig> {
  const config = await testConfig((c) => {
    c.llm.endpoints = endpoints;
    c.llm.maxRetries = 3;
    edit(c);
  });
  const { endpoints: service, pool } = createLlmParts(config, { log: silentLogger, env: {}, ...deps });
  const store = new JobStore(config.stateDir, silentLogger);
  const engine = new Engine({
    store,
    pools: [pool],
    totals: new Map([['llm', llmTotals]]),
    log: silentLogger,
    retentionDays: 1,
  });
  await engine.init();
  cleanups.push(async () => {
    await engine.close();
    await service.close();
    await rm(config.stateDir, { recursive: true, force: true });
  });
  const submit = async (
    prompts: string[],
    options: Partial<LlmJobOptions> = {},
    concurrency = pool.concurrency,
  ): Promise<string> => {
    const inputs: LlmTaskInput[] = prompts.map((prompt, i) => ({
      id: String(i + 1),
      messages: [{ role: 'user', content: prompt }],
    }));
    const job = await engine.submit({
      kind: 'llm',
      inputs,
      options: { model: 'test-model', timeout_seconds: 30, ...options },
      concurrency,
    });
    return job.id;
  };
  const settle = async (jobId: string): Promise<void> => {
    expect(await engine.waitFor([jobId], 60_000)).toBe(true);
  };
  return {
    engine,
    service,
    pool,
    config,
    submit,
    settle,
    async run(prompts, options, concurrency) {
      const jobId = await submit(prompts, options, concurrency);
      await settle(jobId);
      const records = [...(await engine.results(jobId))].sort((a, b) => a.index - b.index);
      return { jobId, records };
    },
  };
}

const valueOf = (record: TaskRecord | undefined): Record<string, unknown> =>
  (record?.value ?? {}) as Record<string, unknown>;

describe('LlmPool', () => {
  it("never exceeds an endpoint's limit, spreads work over both endpoints, and sums usage", async () => {
    const a = await double({ latencyMs: 60, slots: 8 });
    const b = await double({ latencyMs: 60, slots: 8 });
    const r = await rig([endpoint('a', a.url, 2), endpoint('b', b.url, 3)]);
    // All endpoint limits together: the engine starts no more, the router holds each endpoint to its own.
    expect(r.pool.concurrency).toBe(5);
    const { jobId, records } = await r.run(Array.from({ length: 20 }, (_, i) => `prompt ${i}`));
    expect(records.every((rec) => rec.state === 'succeeded')).toBe(true);
    expect(a.peakInFlight).toBeLessThanOrEqual(2);
    expect(b.peakInFlight).toBeLessThanOrEqual(3);
    expect(a.peakInFlight + b.peakInFlight).toBe(5);
    expect(a.completed + b.completed).toBe(20);
    const endpoints = new Set(records.map((rec) => valueOf(rec).endpoint));
    expect(endpoints).toEqual(new Set(['a', 'b']));
    const first = records[0];
    expect(valueOf(first).tokens_in).toBeGreaterThan(0);
    // The job's totals sum every result's tokens.
    const tokensIn = records.reduce((n, rec) => n + Number(valueOf(rec).tokens_in), 0);
    expect(r.engine.snapshotOf(jobId).totals?.fields).toMatchObject({ tokens: { prompt: tokensIn } });
    expect(first?.label).toBe('1');
    expect(valueOf(first)).toMatchObject({
      text: 'Answer to: prompt 0',
      model: 'test-model',
      finish_reason: 'stop',
      truncated: false,
    });
    // Short answers live inline only.
    expect(first?.files).toBeUndefined();
  });

  it('keeps long answers whole in a file and cuts the inline text at the configured cap', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)], (c) => {
      c.llm.maxInlineChars = 100;
    });
    const { records } = await r.run(['#fault:long essay']);
    const value = valueOf(records[0]);
    // The result envelope: `cut` says `text` is only the start; `files.output` holds the whole answer.
    expect(value.cut).toBe(true);
    expect(value.text_cut).toBeUndefined();
    expect(String(value.text)).toHaveLength(101);
    expect(records[0]?.files?.answer).toBeUndefined();
    const full = await readFile(records[0]?.files?.output ?? '', 'utf8');
    expect(full).toMatch(/^Answer to: #fault:long essay( and more){300}$/);
  });

  it('fails over to another endpoint serving the model when one refuses connections', async () => {
    const b = await double();
    const deadUrl = `http://127.0.0.1:${await freePort()}`;
    const r = await rig([endpoint('dead', deadUrl, 4, { models: ['test-model'] }), endpoint('b', b.url, 4)]);
    const { records } = await r.run(Array.from({ length: 8 }, (_, i) => `p${i}`));
    expect(records.map((rec) => rec.state)).toEqual(Array(8).fill('succeeded'));
    expect(records.every((rec) => valueOf(rec).endpoint === 'b')).toBe(true);
    expect(r.service.router.stats('dead')?.down).toBe(true);
  });

  it('retries transient failures (503, 429, reset mid-answer) and not permanent ones', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const { records } = await r.run([
      '#fault:503*2 one',
      '#fault:429*1 two',
      '#fault:reset-mid*1 three',
      '#fault:context four',
      '#fault:503 five',
    ]);
    const [busy, limited, reset, context, alwaysBusy] = records;
    expect(busy?.state).toBe('succeeded');
    expect(valueOf(busy).requests).toBe(3);
    expect(limited?.state).toBe('succeeded');
    expect(reset?.state).toBe('succeeded');
    expect(context?.state).toBe('failed');
    expect(context?.error?.code).toBe('CONTEXT_OVERFLOW');
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:context four')).toHaveLength(1);
    expect(alwaysBusy?.state).toBe('failed');
    expect(alwaysBusy?.error?.code).toBe('UPSTREAM_ERROR');
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:503 five')).toHaveLength(4); // 1 + maxRetries
  });

  it('validates JSON answers: one corrective retry with the error fed back, then fails keeping the raw text', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const schema = {
      type: 'object',
      properties: { risk: { type: 'integer' } },
      required: ['risk'],
      additionalProperties: false,
    };
    const { records } = await r.run(['#fault:bad-json*1 fixable', '#fault:bad-json hopeless', 'fine'], {
      json_schema: schema,
    });
    expect(records[0]?.state).toBe('succeeded');
    expect(valueOf(records[0]).json).toEqual({ risk: 1 });
    const retry = d.chatRequests.filter((q) => JSON.stringify(q.body?.messages).includes('fixable'));
    expect(retry).toHaveLength(2);
    const feedback = JSON.stringify(retry[1]?.body?.messages);
    expect(feedback).toContain('does not match the required JSON schema');
    expect(feedback).toContain('risk');
    expect(records[1]?.state).toBe('failed');
    expect(records[1]?.error?.code).toBe('SCHEMA_INVALID');
    expect(valueOf(records[1]).text).toBe('{"unexpected":true}');
    expect(valueOf(records[2]).json).toEqual({ risk: 1 });
  });

  it('keeps reasoning apart and returns it only on request', async () => {
    const d = await double({ models: [{ id: 'test-model', state: 'loaded', reasoning: 'reasoning_content' }] });
    const r = await rig([endpoint('d', d.url, 4)]);
    const hidden = await r.run(['q', '#fault:think inline']);
    expect(valueOf(hidden.records[0])).toMatchObject({ text: 'Answer to: q' });
    expect(valueOf(hidden.records[0]).reasoning).toBeUndefined();
    expect(valueOf(hidden.records[1]).text).toBe('Answer to: #fault:think inline');
    const shown = await r.run(['q'], { include_reasoning: true });
    expect(valueOf(shown.records[0]).reasoning).toBe('Let me think about this step by step.');
    expect(shown.records[0]?.files).toBeUndefined();
  });

  it('fails empty answers clearly: retried once (not maxRetries times), not when reasoning used up max_tokens', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    expect(r.config.llm.maxRetries).toBe(3);
    const { records } = await r.run(['#fault:empty e', '#fault:reasoning-only r', '#fault:empty*1 once']);
    expect(records[0]?.error?.code).toBe('EMPTY_ANSWER');
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:empty e')).toHaveLength(2);
    expect(records[1]?.error?.code).toBe('EMPTY_ANSWER');
    expect(records[1]?.error?.message).toMatch(/reasoning/);
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:reasoning-only r')).toHaveLength(1);
    expect(records[2]?.state).toBe('succeeded');
  });

  it('cancelling a job aborts its requests in flight (the server sees each disconnect)', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const jobId = await r.submit(Array.from({ length: 6 }, (_, i) => `#fault:hang ${i}`));
    await expect.poll(() => d.inFlight).toBe(4);
    await r.engine.cancel(jobId);
    await r.settle(jobId);
    await expect.poll(() => d.disconnects).toBe(4);
    expect(d.inFlight).toBe(0);
    const records = await r.engine.results(jobId);
    expect(records.map((rec) => `${rec.index}:${rec.state}`).sort()).toEqual([
      '0:cancelled',
      '1:cancelled',
      '2:cancelled',
      '3:cancelled',
      '4:cancelled',
      '5:cancelled',
    ]);
  });

  it('warms an unloaded LM Studio model up once before fanning out, in a router slot, without pinning it', async () => {
    const d = await double({ models: [{ id: 'test-model', state: 'not-loaded' }], loadMs: 300 });
    const r = await rig([endpoint('d', d.url, 4)]);
    const jobId = await r.submit(Array.from({ length: 8 }, (_, i) => `p${i}`));
    // While the model loads, only the warm-up is out, and it holds one of the endpoint's slots.
    await expect.poll(() => d.inFlight).toBe(1);
    expect(r.service.router.stats('d')?.active).toBe(1);
    await r.settle(jobId);
    const records = await r.engine.results(jobId);
    expect(records.every((rec) => rec.state === 'succeeded')).toBe(true);
    expect(d.loads).toBe(1);
    // A just-in-time load (keeps LM Studio's idle TTL and auto-evict), not /api/v1/models/load.
    expect(d.requests.some((q) => q.method === 'POST' && q.path.startsWith('/api/v1/'))).toBe(false);
    expect(d.chatRequests[0]?.body).toMatchObject({ model: 'test-model', max_tokens: 1 });
    expect(d.chatRequests).toHaveLength(9);
    expect(d.peakInFlight).toBeLessThanOrEqual(4);
  });

  it('a connection closed while the server generates is retried with backoff, without marking the endpoint down', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const { records } = await r.run(['#fault:reset-late*1 once', '#fault:reset-late always']);
    expect(records[0]?.state).toBe('succeeded');
    expect(valueOf(records[0]).requests).toBe(2);
    expect(records[1]?.state).toBe('failed');
    expect(records[1]?.error?.code).toBe('UPSTREAM_ERROR');
    expect(records[1]?.error?.message).toMatch(/closed before the answer/);
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:reset-late always')).toHaveLength(4); // 1 + maxRetries
    expect(r.service.router.stats('d')?.down).toBe(false);
  });

  it('does not retry a model that failed to load (each retry would load it again)', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const { records } = await r.run(['#fault:load-error x']);
    expect(records[0]?.error?.code).toBe('UPSTREAM_ERROR');
    expect(records[0]?.error?.message).toMatch(/could not load the model/);
    expect(d.chatRequests).toHaveLength(1);
  });

  it("sends the id the server knows (qwen3 → qwen3:30b), and lists the models when the server's own error does not", async () => {
    const d = await double({ flavor: 'openai', models: [{ id: 'qwen3:30b' }, { id: 'llama3.2:3b' }] });
    const r = await rig([endpoint('d', d.url, 4, { flavor: 'openai' })]);
    const { records } = await r.run(['hi'], { model: 'qwen3' });
    expect(records[0]?.state).toBe('succeeded');
    expect(d.chatRequests[0]?.body?.model).toBe('qwen3:30b');

    const pinned = await rig([endpoint('p', d.url, 4, { flavor: 'openai', models: ['ghost'] })]);
    const unknown = await pinned.run(['hi'], { model: 'ghost' });
    expect(unknown.records[0]?.error?.code).toBe('MODEL_NOT_FOUND');
    // Ollama only says "not found"; the list comes from the endpoint's /v1/models.
    expect(unknown.records[0]?.error?.message).toMatch(
      /model "ghost" not found.*Models there: qwen3:30b, llama3\.2:3b\./,
    );
  });

  it('marks truncation by max_tokens and returns inline <think> and gpt-oss `reasoning` on request', async () => {
    const d = await double({
      models: [
        { id: 'test-model', state: 'loaded' },
        { id: 'gpt-oss', state: 'loaded', reasoning: 'reasoning' },
      ],
    });
    const r = await rig([endpoint('d', d.url, 4)]);
    const cut = await r.run(['one two three four five'], { max_tokens: 2 });
    expect(valueOf(cut.records[0])).toMatchObject({ text: 'Answer to:', finish_reason: 'length', truncated: true });
    const inline = await r.run(['#fault:think t'], { include_reasoning: true });
    expect(valueOf(inline.records[0])).toMatchObject({
      text: 'Answer to: #fault:think t',
      reasoning: 'Inline reasoning here.',
    });
    const oss = await r.run(['q'], { model: 'gpt-oss', include_reasoning: true });
    expect(valueOf(oss.records[0])).toMatchObject({
      text: 'Answer to: q',
      reasoning: 'Let me think about this step by step.',
    });
    expect(d.chatRequests.at(-1)?.body?.model).toBe('gpt-oss');
  });

  it('writes long answers to files only the owner can read', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const { records } = await r.run(['#fault:long essay']);
    const file = records[0]?.files?.output ?? '';
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('a per-job concurrency below the endpoint limit caps that job; above it, the endpoint limit holds', async () => {
    const d = await double({ latencyMs: 30 });
    const r = await rig([endpoint('d', d.url, 4)]);
    await r.run(
      Array.from({ length: 12 }, (_, i) => `p${i}`),
      {},
      2,
    );
    expect(d.peakInFlight).toBe(2);
    d.resetStats();
    await r.run(
      Array.from({ length: 12 }, (_, i) => `p${i}`),
      {},
      8,
    );
    expect(d.peakInFlight).toBe(4);
  });

  it(
    'fails at once when a 429 asks to wait longer than it would, saying when to come back',
    { timeout: 20_000 },
    async () => {
      const d = await double();
      const r = await rig([endpoint('d', d.url, 4)]);
      const { records } = await r.run(['#fault:429-long x', '#fault:429*1 y']);
      const [tooLong, short] = records;
      expect(tooLong?.state).toBe('failed');
      expect(tooLong?.error?.code).toBe('UPSTREAM_ERROR');
      expect(tooLong?.error?.message).toMatch(/429.*retry after 100000 s.*longer than .*30 s/);
      expect(tooLong?.error?.hint).toMatch(/resume_job/);
      // No retry, so no slot held while waiting for nothing.
      expect(d.chatRequests.filter((q) => q.prompt === '#fault:429-long x')).toHaveLength(1);
      expect(short?.state).toBe('succeeded');
    },
  );

  it('retries a 200 with an empty body once (as an empty answer), and says what happened when it persists', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const { records } = await r.run(['#fault:empty-body*1 once', '#fault:empty-body always']);
    const [once, always] = records;
    expect(once?.state).toBe('succeeded');
    expect(valueOf(once).requests).toBe(2);
    expect(always?.state).toBe('failed');
    expect(always?.error?.code).toBe('UPSTREAM_ERROR');
    expect(always?.error?.message).toMatch(/status 200 with an empty body/);
    expect(always?.error?.hint).toMatch(/retried/);
    expect(always?.error?.hint).not.toMatch(/endpoint URL/);
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:empty-body always')).toHaveLength(2); // 1 + one retry
  });

  it.each([3, 1, 0])(
    'sends a prompt whose connection drops at once exactly 1 + maxRetries (%i) times, kept-alive connections or not',
    async (maxRetries) => {
      const d = await double();
      const r = await rig([endpoint('d', d.url, 4)], (c) => {
        c.llm.maxRetries = maxRetries;
      });
      // Kept-alive connections to reuse: a drop on one of them looks like a stale keep-alive.
      await r.run(Array.from({ length: 8 }, (_, i) => `warm ${i}`));
      const { records } = await r.run(['#fault:reset always'], {}, 1);
      expect(records[0]?.state).toBe('failed');
      expect(records[0]?.error?.code).toBe('UPSTREAM_ERROR');
      const sent = d.chatRequests.filter((q) => q.prompt === '#fault:reset always');
      expect(sent).toHaveLength(1 + maxRetries);
      expect(valueOf(records[0]).requests).toBe(1 + maxRetries);
    },
    30_000,
  );

  it('a stale kept-alive connection costs one retry, and the prompt still succeeds', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)], (c) => {
      c.llm.maxRetries = 1;
    });
    await r.run(Array.from({ length: 8 }, (_, i) => `warm ${i}`));
    const { records } = await r.run(['#fault:reset*1 stale'], {}, 1);
    expect(records[0]?.state).toBe('succeeded');
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:reset*1 stale')).toHaveLength(2);
    expect(valueOf(records[0]).requests).toBe(2);
  });

  it('retries a 500 once (LM Studio answers 500 when overloaded)', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    const { records } = await r.run(['#fault:500*1 once', '#fault:500 always']);
    const [once, always] = records;
    expect(once?.state).toBe('succeeded');
    expect(valueOf(once).requests).toBe(2);
    expect(always?.state).toBe('failed');
    expect(always?.error?.code).toBe('UPSTREAM_ERROR');
    expect(always?.error?.message).toMatch(/HTTP 500/);
    expect(always?.error?.hint).toMatch(/retried once/);
    expect(d.chatRequests.filter((q) => q.prompt === '#fault:500 always')).toHaveLength(2);
  });

  it('waits for an endpoint that went away and comes back on the same port, probing it once for all waiting tasks', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    // The server was up when the batch was planned: its model list is known.
    expect((await r.run(['warm'])).records[0]?.state).toBe('succeeded');
    await d.close();
    const jobId = await r.submit(Array.from({ length: 12 }, (_, i) => `p${i}`));
    // Down for longer than the retries alone would have lasted (~2 s of backoff).
    await expect.poll(() => r.service.outage('d')?.probes ?? 0, { timeout: 15_000 }).toBeGreaterThanOrEqual(4);
    const down = r.service.outage('d');
    // Only the tasks in flight when it went away sent a request; the rest wait on the shared probe.
    expect(down?.refused).toBeLessThanOrEqual(4);
    expect(down?.waiting).toBe(4);
    await d.reopen();
    await r.settle(jobId);
    const records = await r.engine.results(jobId);
    expect(records.map((rec) => rec.state)).toEqual(Array(12).fill('succeeded'));
    expect(d.chatRequests.filter((q) => q.prompt?.startsWith('p'))).toHaveLength(12);
    expect(r.service.outage('d')).toBeUndefined();
  });

  it('fails waiting tasks with ENDPOINT_UNREACHABLE once the endpoint stays away past the bound, and queued ones at once', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 2)], () => {}, { outageWaitMs: 1500 });
    expect((await r.run(['warm'])).records[0]?.state).toBe('succeeded');
    await d.close();
    const { records } = await r.run(Array.from({ length: 6 }, (_, i) => `p${i}`));
    expect(records.map((rec) => rec.error?.code)).toEqual(Array(6).fill('ENDPOINT_UNREACHABLE'));
    expect(records[0]?.error?.message).toMatch(/did not come back within 1\.5 s/);
    expect(records[0]?.error?.hint).toMatch(/lms server start/);
    expect(records[0]?.error?.hint).toMatch(/resume_job/);
    // Two tasks in flight sent a request each; the four queued behind them sent nothing.
    expect(r.service.outage('d')?.refused).toBeLessThanOrEqual(2);
  });

  it('a task waiting for its endpoint stops at once when cancelled, and never waits past its own timeout', async () => {
    const d = await double();
    const r = await rig([endpoint('d', d.url, 4)]);
    expect((await r.run(['warm'])).records[0]?.state).toBe('succeeded');
    await d.close();
    const jobId = await r.submit(['a', 'b']);
    await expect.poll(() => r.service.outage('d')?.waiting ?? 0, { timeout: 10_000 }).toBe(2);
    await r.engine.cancel(jobId);
    await r.settle(jobId);
    expect((await r.engine.results(jobId)).map((rec) => rec.state)).toEqual(['cancelled', 'cancelled']);

    const { records } = await r.run(['c'], { timeout_seconds: 1 });
    expect(records[0]?.error?.code).toBe('ENDPOINT_UNREACHABLE');
  });

  it('backs off exponentially with jitter, and honours Retry-After', () => {
    const policy = { maxRetries: 3, ...LLM_BACKOFF };
    expect(backoffMs(1, policy, () => 0)).toBe(125);
    expect(backoffMs(1, policy, () => 1)).toBe(250);
    expect(backoffMs(3, policy, () => 1)).toBe(1000);
    expect(backoffMs(20, policy, () => 1)).toBe(8000);
    expect(retryDelayMs(1, policy, 2000)).toBe(2000);
    expect(retryDelayMs(1, policy, 999_000)).toBe(30_000);
  });
});
