import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.js';
import { silentLogger } from '../../../src/log.js';
import { JobStore } from '../../../src/store/store.js';
import { freePort } from '../../helpers/net.js';
import { cleanupsAfterEach, failure } from '../../helpers/cleanup.js';
import { endpoint, endpointsRig, listRequests } from './endpoints-rig.js';

const cleanups = cleanupsAfterEach();
const { double, service, partsOf } = endpointsRig(cleanups);

describe('model lists', () => {
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
    const rig = partsOf(llm);
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
