import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config.js';
import { Engine } from '../../../src/engine/engine.js';
import { silentLogger } from '../../../src/log.js';
import type { Endpoints } from '../../../src/pools/llm/endpoints.js';
import { createLlmParts } from '../../../src/pools/llm/index.js';
import type { LlmPool } from '../../../src/pools/llm/pool.js';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';
import { JobStore } from '../../../src/store/store.js';
import { LmStudioDouble, type DoubleOptions } from '../../fixtures/lmstudio-double.js';
import { testConfig } from '../../helpers/client.js';
import { freePort } from '../../helpers/net.js';
import { cleanupsAfterEach, failure } from '../../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

async function double(options: DoubleOptions = {}): Promise<LmStudioDouble> {
  const d = await LmStudioDouble.start(options);
  cleanups.push(() => d.close());
  return d;
}

function endpoint(name: string, url: string, extra: Partial<EndpointConfig> = {}): EndpointConfig {
  return { name, url, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN', ...extra };
}

interface ServiceOptions {
  env?: Record<string, string>;
  now?: () => number;
}

/** The pool and state dir behind each endpoints object service() made. */
const rigs = new WeakMap<Endpoints, { pool: LlmPool; stateDir: string }>();

async function service(
  endpoints: EndpointConfig[],
  options: ServiceOptions = {},
  edit: (c: Config) => void = () => {},
): Promise<Endpoints> {
  const config = await testConfig((c) => {
    c.llm.endpoints = endpoints;
    edit(c);
  });
  const parts = createLlmParts(config, {
    log: silentLogger,
    env: options.env ?? {},
    ...(options.now ? { now: options.now } : {}),
  });
  rigs.set(parts.endpoints, { pool: parts.pool, stateDir: config.stateDir });
  cleanups.push(async () => {
    await parts.endpoints.close();
    await rm(config.stateDir, { recursive: true, force: true });
  });
  return parts.endpoints;
}

const listRequests = (d: LmStudioDouble): number => d.requests.filter((q) => q.path.endsWith('/models')).length;

describe('Endpoints discovery', () => {
  it('answers "cached" from the cache for 30 s, then refreshes in the background; a failure is looked at again after 3 s', async () => {
    const d = await double();
    let clock = 1_000_000;
    const llm = await service([endpoint('d', d.url)], { now: () => clock });
    expect((await llm.discover('d', 'fresh')).models?.map((m) => m.id)).toEqual(['test-model']);
    expect(listRequests(d)).toBe(1);
    clock += 29_000;
    await llm.discover('d', 'cached');
    expect(listRequests(d)).toBe(1);
    clock += 2_000;
    const stale = await llm.discover('d', 'cached');
    // The stale list answers at once; a refresh goes out behind it.
    expect(stale.models?.map((m) => m.id)).toEqual(['test-model']);
    await expect.poll(() => listRequests(d)).toBe(2);

    await d.close();
    clock += 31_000;
    const failed = await llm.discover('d', 'fresh');
    expect(failed.error?.code).toBe('ENDPOINT_UNREACHABLE');
    const before = failed.at;
    clock += 2_000;
    expect((await llm.discover('d', 'cached')).at).toBe(before);
    clock += 2_000;
    await llm.discover('d', 'cached');
    await expect.poll(async () => (await llm.discover('d', 'cached')).at).toBeGreaterThan(before);
  });

  it('keeps the last good model list when a refresh fails, so a hiccup does not fail a batch', async () => {
    const d = await double();
    const llm = await service([endpoint('d', d.url)]);
    await llm.discover('d', 'fresh');
    await d.close();
    const after = await llm.discover('d', 'fresh');
    expect(after.error?.code).toBe('ENDPOINT_UNREACHABLE');
    expect(after.answered).toBe(false);
    expect(after.models?.map((m) => m.id)).toEqual(['test-model']);
    expect((await llm.candidatesFor('test-model', 'cached')).endpoints).toEqual(['d']);
    // At submit time a server that is down right now is reported, not silently accepted.
    expect((await failure(llm.resolveModel('test-model'))).code).toBe('ENDPOINT_UNREACHABLE');
  });

  it('runs a batch when the server was down at discovery and is back: the requests themselves decide', async () => {
    const port = await freePort();
    const llm = await service([endpoint('d', `http://127.0.0.1:${port}`)], {}, (c) => {
      c.llm.maxRetries = 3;
    });
    expect((await llm.discover('d', 'fresh')).error?.code).toBe('ENDPOINT_UNREACHABLE');
    const found = await llm.candidatesFor('test-model', 'cached');
    expect(found).toMatchObject({ endpoints: [], unverified: ['d'] });

    const d = await double({ port });
    const rig = rigs.get(llm);
    if (!rig) throw new Error('no rig');
    const engine = new Engine({
      store: new JobStore(rig.stateDir, silentLogger),
      pools: [rig.pool],
      log: silentLogger,
      retentionDays: 1,
    });
    await engine.init();
    cleanups.push(() => engine.close());
    const job = await engine.submit({
      kind: 'llm',
      inputs: [{ id: '1', messages: [{ role: 'user', content: 'back again' }] }],
      options: { model: 'test-model', timeout_seconds: 30 },
      concurrency: 4,
    });
    expect(await engine.waitFor([job.id], 30_000)).toBe(true);
    const [record] = await engine.results(job.id);
    expect(record?.state).toBe('succeeded');
    expect(d.chatRequests.map((q) => q.prompt)).toEqual(['back again']);
  });

  it('never lets a refresh started before invalidate() fill the cache or be shared after it', async () => {
    const d = await double();
    const llm = await service([endpoint('d', d.url)]);
    const early = llm.discover('d', 'fresh');
    llm.invalidate('d');
    const late = llm.discover('d', 'fresh');
    // The second call does not join the first: it asks again.
    await Promise.all([early, late]);
    expect(listRequests(d)).toBe(2);
    const racing = llm.discover('d', 'fresh');
    llm.invalidate('d');
    await racing;
    // The invalidated result was not cached: a "cached" caller has to ask again.
    await llm.discover('d', 'cached');
    expect(listRequests(d)).toBe(4);
  });
});

describe('Endpoints model resolution', () => {
  it('takes the only model of a single-model server, refuses to guess among several, and uses the loaded LLM of LM Studio', async () => {
    const single = await double({ flavor: 'openai', models: [{ id: 'tiny' }] });
    expect(
      (await (await service([endpoint('s', single.url, { flavor: 'openai' })])).resolveModel(undefined)).model,
    ).toBe('tiny');

    const several = await double({ flavor: 'openai', models: [{ id: 'a' }, { id: 'b' }] });
    const ambiguous = await failure(
      (await service([endpoint('m', several.url, { flavor: 'openai' })])).resolveModel(undefined),
    );
    expect(ambiguous.code).toBe('INVALID_INPUT');
    expect(ambiguous.message).toMatch(/Several models are available and none is set as default: a \(m\), b \(m\)/);

    const lm = await double({
      models: [
        { id: 'cold', state: 'not-loaded' },
        { id: 'warm', state: 'loaded' },
      ],
    });
    expect((await (await service([endpoint('l', lm.url)])).resolveModel(undefined)).model).toBe('warm');
  });

  it('refuses an ambiguous short name, naming the ids it could be', async () => {
    const d = await double({ flavor: 'openai', models: [{ id: 'qwen3:8b' }, { id: 'qwen3:30b' }] });
    const llm = await service([endpoint('o', d.url, { flavor: 'openai' })]);
    const error = await failure(llm.resolveModel('qwen3'));
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toContain('qwen3:8b, qwen3:30b (o)');
    expect((await llm.candidatesFor('qwen3:30b', 'cached')).served).toEqual({ o: 'qwen3:30b' });
  });
});

describe('Endpoints warm-up and reports', () => {
  it('shares one warm-up between concurrent callers, and skips models already loaded', async () => {
    const d = await double({
      models: [
        { id: 'cold', state: 'not-loaded' },
        { id: 'warm', state: 'loaded' },
      ],
      loadMs: 100,
    });
    const llm = await service([endpoint('d', d.url)]);
    const signal = AbortSignal.timeout(10_000);
    await Promise.all([
      llm.ensureLoaded('cold', signal),
      llm.ensureLoaded('cold', signal),
      llm.ensureLoaded('warm', signal),
    ]);
    expect(d.loads).toBe(1);
    expect(d.chatRequests.map((q) => [q.body?.model, q.body?.max_tokens])).toEqual([['cold', 1]]);
    // Loaded now: a later batch warms nothing up.
    await llm.ensureLoaded('cold', signal);
    expect(d.chatRequests).toHaveLength(1);
  });

  it('reads the token from the env var the endpoint names; an empty value counts as unset', async () => {
    const d = await double({ token: 'sk-lm-abc:def' });
    const empty = await service([endpoint('d', d.url)], { env: { LM_API_TOKEN: '' } });
    const [refused] = await empty.report();
    expect(refused).toMatchObject({
      reachable: true,
      tokenSet: false,
      tokenEnv: 'LM_API_TOKEN',
      error: { code: 'AUTH_REQUIRED' },
    });
    expect(d.requests.every((q) => q.authorization === undefined)).toBe(true);

    const set = await service([endpoint('d', d.url)], { env: { LM_API_TOKEN: 'sk-lm-abc:def' } });
    const [ok] = await set.report();
    expect(ok).toMatchObject({ reachable: true, tokenSet: true, models: [{ id: 'test-model' }] });
    expect(ok?.error).toBeUndefined();
  });
});
