import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendJson, startHttpServer } from '../../fixtures/http-server.js';
import { LmStudioDouble } from '../../fixtures/lmstudio-double.js';
import { OllamaDouble } from '../../fixtures/ollama-double.js';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { connectInMemory, jobIdOf, testConfig, textOf, type Connected } from '../../helpers/client.js';
import { collectAll } from '../../helpers/collect.js';
import { type LlamaServer, llamaAvailable, startLlama } from '../../helpers/llama.js';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';

interface EndpointView {
  name: string;
  flavor: string | null;
  reachable: boolean;
  slots: { total: number; busy?: number; source: string } | null;
  limit: { value: number; source: string };
  peak_in_flight: number;
  models: Array<{ id: string; state?: string; context_length?: number; context_source?: string; parallel?: number }>;
}

async function endpointsOf(c: Connected): Promise<EndpointView[]> {
  const reply = await c.call('lmstudio_models');
  expect(reply.isError, textOf(reply)).toBeFalsy();
  return (reply.structuredContent as { endpoints: EndpointView[] }).endpoints;
}

/** An endpoint as the config parser makes it when the user names no concurrency. */
const auto = (name: string, url: string, flavor: EndpointConfig['flavor'] = 'openai'): EndpointConfig => ({
  name,
  url,
  concurrency: 4,
  concurrencyAuto: true,
  models: [],
  flavor,
});

describe.skipIf(!llamaAvailable)('the real llama-server at --parallel 6, no concurrency configured', () => {
  let llama: LlamaServer | undefined;
  let c: Connected;

  beforeAll(async () => {
    llama = await startLlama(6, 60_000, { context: 12_288 });
    const url = llama.url;
    // Configured as LM Studio (as a port-1234 guess would): the server's answers decide, not the config.
    const config = await testConfig((cfg) => (cfg.llm.endpoints = [auto('llama', url, 'lmstudio')]));
    c = await connectInMemory(config);
  }, 90_000);

  afterAll(async () => {
    await c?.close();
    await llama?.stop();
  }, 20_000);

  it('reads 6 slots of 2,048 tokens from /props and runs 6 at once', async () => {
    const [before] = await endpointsOf(c);
    expect(before).toMatchObject({
      flavor: 'llama-server',
      reachable: true,
      slots: { total: 6, busy: 0, source: 'server' },
      limit: { value: 6, source: 'server' },
    });
    expect(before?.models).toEqual([
      expect.objectContaining({
        id: 'tiny',
        state: 'loaded',
        context_length: 2048,
        context_source: 'server',
        parallel: 6,
      }),
    ]);

    const submitted = await c.call('lmstudio_complete', {
      prompts: Array.from({ length: 18 }, (_, i) => ({ prompt: `Tell a tale of ${i}.` })),
      max_tokens: 96,
      temperature: 0,
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    expect(textOf(submitted)).toContain('up to 6 prompt(s) at once');
    const { results } = await collectAll(c, jobIdOf(submitted), { timeoutMs: 150_000 });
    expect(results.filter((r) => r.state === 'succeeded')).toHaveLength(18);
    const [after] = await endpointsOf(c);
    // Six requests held at once by the router (the server queues nothing of ours beyond its slots).
    expect(after?.peak_in_flight).toBe(6);
  }, 180_000);
});

describe('servers that tell their slots, and ones that do not', () => {
  const cleanups = cleanupsAfterEach();

  it("LM Studio: the loaded instance's parallel slots set the limit; a user's figure caps it, never raises it", async () => {
    const lmstudio = await LmStudioDouble.start({ slots: 3 });
    cleanups.push(() => lmstudio.close());
    const config = await testConfig((cfg) => {
      cfg.llm.endpoints = [
        auto('auto', lmstudio.url),
        { ...auto('capped', lmstudio.url), concurrency: 2, concurrencyAuto: false },
        { ...auto('above', lmstudio.url), concurrency: 8, concurrencyAuto: false },
      ];
    });
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const views = await endpointsOf(c);
    expect(views.map((v) => [v.name, v.flavor, v.slots?.total, v.limit])).toEqual([
      ['auto', 'lmstudio', 3, { value: 3, source: 'server' }],
      ['capped', 'lmstudio', 3, { value: 2, source: 'config' }],
      ['above', 'lmstudio', 3, { value: 3, source: 'server' }],
    ]);
  });

  it('Ollama: detected by /api/tags, loaded models and their context from /api/ps; no slot count, the default stands', async () => {
    const ollama = await OllamaDouble.start({
      models: [{ name: 'qwen3:latest', loadedContext: 8192 }, { name: 'llama3.2:latest' }],
    });
    cleanups.push(() => ollama.close());
    const config = await testConfig((cfg) => (cfg.llm.endpoints = [auto('ollama', ollama.url, 'lmstudio')]));
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const [view] = await endpointsOf(c);
    expect(view).toMatchObject({ flavor: 'ollama', reachable: true, slots: null });
    expect(view?.models).toEqual([
      { id: 'qwen3:latest', state: 'loaded', context_length: 8192, context_source: 'server' },
      { id: 'llama3.2:latest', state: 'not-loaded' },
    ]);
  });

  it('an unreachable endpoint says so, with no flavour guessed from its port', async () => {
    const gone = await LmStudioDouble.start();
    const url = gone.url;
    await gone.close();
    const config = await testConfig((cfg) => (cfg.llm.endpoints = [auto('gone', url, 'lmstudio')]));
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const [view] = await endpointsOf(c);
    expect(view).toMatchObject({ flavor: null, reachable: false, slots: null, limit: { value: 4, source: 'default' } });
  });
});

describe('a server that lies about itself', () => {
  const cleanups = cleanupsAfterEach();

  it('is held to what a real server could say: slots, context, model ids and their number bounded', async () => {
    const ids = [
      'tiny',
      '\u001b[2J\u001b[31mred',
      'right\u202eleft',
      'x'.repeat(300),
      '<img src=x onerror="alert(1)">',
      ...Array.from({ length: 2000 }, (_, i) => `m${i}`),
    ];
    const liar = await startHttpServer((req, res) => {
      const path = req.url ?? '';
      if (path === '/props')
        return sendJson(res, 200, { total_slots: 1e9, default_generation_settings: { n_ctx: 1e15 } });
      if (path === '/slots') return sendJson(res, 200, [{ id: 0, is_processing: true }]);
      if (path === '/v1/models')
        return sendJson(res, 200, { object: 'list', data: ids.map((id) => ({ id, meta: { n_ctx: 1e15 } })) });
      return sendJson(res, 404, { error: { message: 'File Not Found', type: 'not_found_error', code: 404 } });
    });
    cleanups.push(() => liar.close());
    const config = await testConfig((cfg) => (cfg.llm.endpoints = [auto('liar', liar.origin)]));
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const reply = await c.call('lmstudio_models');
    const [view] = (reply.structuredContent as { endpoints: EndpointView[] }).endpoints;
    // /slots listed one slot, /props a billion: the slots it lists win, and a limit never passes 256.
    expect(view).toMatchObject({ flavor: 'llama-server', slots: { total: 1, busy: 1 }, limit: { value: 1 } });
    const listed = view?.models.map((m) => m.id) ?? [];
    // 1,000 kept of the 2,005 listed (three ids refused); the reply shows 200 of them and says so.
    expect(listed).toHaveLength(200);
    expect(view).toMatchObject({ models_total: 2005 });
    expect(JSON.stringify(view)).toMatch(/The server listed 2005; the 1000 kept/);
    expect(listed.slice(0, 2)).toEqual(['tiny', '<img src=x onerror="alert(1)">']);
    expect(view?.models[0]?.context_length).toBe(16 * 1024 * 1024);
    // No control character or bidi override reaches a reader (the terminal of `monitor-mcp doctor`).
    expect(textOf(reply)).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
  });

  it('with no /slots, a billion slots in /props is capped at 256', async () => {
    const liar = await startHttpServer((req, res) => {
      if (req.url === '/props')
        return sendJson(res, 200, { total_slots: 1e9, default_generation_settings: { n_ctx: 2048 } });
      if (req.url === '/v1/models') return sendJson(res, 200, { object: 'list', data: [{ id: 'tiny' }] });
      return sendJson(res, 404, { error: { message: 'File Not Found' } });
    });
    cleanups.push(() => liar.close());
    const config = await testConfig((cfg) => (cfg.llm.endpoints = [auto('liar', liar.origin)]));
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const [view] = await endpointsOf(c);
    expect(view).toMatchObject({ slots: { total: 256 }, limit: { value: 256, source: 'server' } });
  });
});
