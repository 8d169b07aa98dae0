import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
