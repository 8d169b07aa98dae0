import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { endpoint, endpointsRig } from './endpoints-rig.js';

const cleanups = cleanupsAfterEach();
const { double, service } = endpointsRig(cleanups);

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
