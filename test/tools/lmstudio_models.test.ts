import { describe, expect, it } from 'vitest';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { connectInMemory, testConfig, textOf } from '../helpers/client.js';
import { freePort } from '../helpers/net.js';
import { cleanupsAfterEach } from '../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

describe('lmstudio_models', () => {
  it('reports each endpoint: reachable or why not, models with type, loaded state and context', async () => {
    const lmstudio = await LmStudioDouble.start({
      models: [
        { id: 'qwen3-8b', type: 'llm', state: 'loaded', contextLength: 32768 },
        { id: 'llama-70b', type: 'llm', state: 'not-loaded', contextLength: 131072 },
        { id: 'nomic-embed', type: 'embeddings', state: 'not-loaded', contextLength: 2048 },
      ],
    });
    const vllm = await LmStudioDouble.start({ flavor: 'openai', models: [{ id: 'meta/llama-3' }] });
    cleanups.push(
      () => lmstudio.close(),
      () => vllm.close(),
    );
    const dead = `http://127.0.0.1:${await freePort()}`;
    const config = await testConfig((c) => {
      c.llm.endpoints = [
        { name: 'gpu1', url: lmstudio.url, concurrency: 4, concurrencyAuto: true, models: [], flavor: 'lmstudio' },
        { name: 'cluster', url: vllm.url, concurrency: 16, models: [], flavor: 'openai' },
        { name: 'gpu2', url: dead, concurrency: 2, models: [], flavor: 'lmstudio' },
      ];
    });
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());

    const reply = await c.call('lmstudio_models');
    expect(reply.isError).toBeFalsy();
    const text = textOf(reply);
    // The flavour is what the server said (LM Studio's /api/v1/models), slots and limit from its loaded instance.
    expect(text).toMatch(/gpu1 \(lmstudio, http:\S+, 4 slot\(s\), 4 at once \[server\], checked \d+ s ago\)/);
    expect(text).toMatch(/cluster \(openai, http:\S+, 16 at once \[config\]/);
    expect(text).toContain('qwen3-8b (llm, loaded, context 32768 per slot [server], 4 parallel)');
    expect(text).toContain('llama-70b (llm, not-loaded, max context 131072)');
    expect(text).toContain('nomic-embed (embeddings, not-loaded');
    expect(text).toMatch(/gpu2 .*NOT REACHABLE — ENDPOINT_UNREACHABLE/);
    expect(text).toContain('lms server start');
    const structured = reply.structuredContent as { endpoints: Array<Record<string, unknown>> };
    expect(structured.endpoints.map((e) => [e.name, e.reachable])).toEqual([
      ['gpu1', true],
      ['cluster', true],
      ['gpu2', false],
    ]);
    expect(structured.endpoints[0]).toMatchObject({
      flavor: 'lmstudio',
      slots: { total: 4, source: 'server' },
      limit: { value: 4, source: 'server' },
    });
    expect(structured.endpoints[0]?.models).toContainEqual({
      id: 'qwen3-8b',
      type: 'llm',
      state: 'loaded',
      context_length: 32768,
      context_source: 'server',
      parallel: 4,
      max_context_length: 32768,
    });
    // A plain server tells no context: the one chunks are sized to is the assumed default, and says so.
    expect(structured.endpoints[1]).toMatchObject({
      flavor: 'openai',
      slots: null,
      limit: { value: 16, source: 'config' },
    });
    expect(structured.endpoints[1]?.models).toEqual([
      { id: 'meta/llama-3', context_length: 4096, context_source: 'default' },
    ]);
    expect(structured.endpoints[2]).toMatchObject({ flavor: null, reachable: false });
    expect(vllm.requests.map((r) => r.path)).toContain('/v1/models');

    const one = await c.call('lmstudio_models', { endpoint: 'cluster' });
    expect((one.structuredContent as { endpoints: unknown[] }).endpoints).toHaveLength(1);
    const unknown = await c.call('lmstudio_models', { endpoint: 'nope' });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toContain('gpu1, cluster, gpu2');
  });

  it('calls an endpoint that answers 401 reachable but refused, and says how to pass the token', async () => {
    const guarded = await LmStudioDouble.start({ token: 'sk-lm-abc:def' });
    cleanups.push(() => guarded.close());
    const config = await testConfig((c) => {
      c.llm.endpoints = [
        {
          name: 'guarded',
          url: guarded.url,
          concurrency: 4,
          models: [],
          flavor: 'lmstudio',
          apiKeyEnv: 'LM_API_TOKEN',
        },
      ];
    });
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const reply = await c.call('lmstudio_models');
    expect(textOf(reply)).toMatch(
      /guarded .*: reachable, refused \(AUTH_REQUIRED\): endpoint guarded refused the request \(HTTP 401\)/,
    );
    expect(textOf(reply)).toMatch(/Fix: Set LM_API_TOKEN/);
    expect(textOf(reply)).not.toContain('NOT REACHABLE');
    const structured = reply.structuredContent as { endpoints: Array<Record<string, unknown>> };
    expect(structured.endpoints[0]).toMatchObject({
      name: 'guarded',
      reachable: true,
      error: { code: 'AUTH_REQUIRED' },
      models: [],
    });
  });

  it('lists at most 200 models of a server listing 20,000, loaded ones first, within the output budget, and says how to see one', async () => {
    const models = Array.from({ length: 20_000 }, (_, i) => ({
      id: `org-${String(i).padStart(6, '0')}/model-${'x'.repeat(100)}`,
      type: 'llm' as const,
      state: 'not-loaded' as const,
      contextLength: 8192,
    }));
    // The one loaded model comes last in the server's list: it must be kept and shown first all the same.
    models.push({ id: 'the-loaded-one', type: 'llm', state: 'loaded' as 'not-loaded', contextLength: 4096 });
    const big = await LmStudioDouble.start({ models });
    cleanups.push(() => big.close());
    const config = await testConfig((c) => {
      c.llm.endpoints = [{ name: 'big', url: big.url, concurrency: 4, models: [], flavor: 'lmstudio' }];
    });
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());

    const reply = await c.call('lmstudio_models');
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const json = JSON.stringify(reply.structuredContent);
    // Text and structuredContent together within the client's 25,000-token reply (≈4 characters a token).
    expect(json.length + textOf(reply).length).toBeLessThan(80_000);
    const endpoint = (reply.structuredContent as { endpoints: Array<Record<string, unknown>> }).endpoints[0];
    const shown = endpoint?.models as Array<{ id: string }>;
    expect(shown.length).toBeGreaterThan(50);
    expect(shown.length).toBeLessThanOrEqual(200);
    expect(shown[0]?.id).toBe('the-loaded-one');
    expect(endpoint?.models_total).toBe(20_001);
    expect(String(endpoint?.models_note)).toMatch(
      new RegExp(
        `^${shown.length} of 20001 models shown \\(loaded, then chat models first\\)\\. The server listed 20001; the 1000 kept`,
      ),
    );
    expect(String(endpoint?.models_note)).toContain('model: "<its id, or part of it>" and no action');
    expect(textOf(reply)).toContain(`Note: ${String(endpoint?.models_note)}`);

    // A given one, by part of its id.
    const one = await c.call('lmstudio_models', { model: 'org-000500/' });
    const found = (one.structuredContent as { endpoints: Array<Record<string, unknown>> }).endpoints[0];
    expect((found?.models as Array<{ id: string }>).map((m) => m.id)).toEqual([`org-000500/model-${'x'.repeat(100)}`]);
    expect(found?.models_total).toBe(1);
  }, 120_000);
});
