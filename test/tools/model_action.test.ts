import { describe, expect, it } from 'vitest';
import type { EndpointConfig } from '../../src/pools/llm/settings.js';
import { LlamaRouterDouble } from '../fixtures/llama-router-double.js';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { OllamaDouble } from '../fixtures/ollama-double.js';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { type Connected, connectInMemory, testConfig, textOf } from '../helpers/client.js';

const cleanups = cleanupsAfterEach();

interface ActionResult {
  endpoint: string;
  flavor: string;
  model: string;
  loaded: boolean | null;
  context_length: number | null;
  notes?: string[];
}

/** An MCP client of a server whose only endpoint is `url`. */
async function serverOn(url: string, flavor: EndpointConfig['flavor'] = 'openai'): Promise<Connected> {
  const config = await testConfig((c) => {
    c.llm.endpoints = [{ name: 'local', url, concurrency: 4, models: [], flavor }];
  });
  const c = await connectInMemory(config);
  cleanups.push(() => c.close());
  return c;
}

function resultsOf(reply: Awaited<ReturnType<Connected['call']>>): ActionResult[] {
  expect(reply.isError, textOf(reply)).toBeFalsy();
  return (reply.structuredContent as { results: ActionResult[] }).results;
}

describe('lmstudio_models action', () => {
  it('loads on LM Studio through its REST API with the context and TTL asked, says how to set parallel slots, and unloads', async () => {
    const lmstudio = await LmStudioDouble.start({
      models: [{ id: 'qwen3-8b', type: 'llm', state: 'not-loaded', contextLength: 4096, maxContextLength: 32768 }],
    });
    cleanups.push(() => lmstudio.close());
    const c = await serverOn(lmstudio.url, 'lmstudio');

    const load = await c.call('lmstudio_models', {
      action: 'load',
      model: 'qwen3-8b',
      context_length: 16384,
      ttl_seconds: 600,
    });
    const [loaded] = resultsOf(load);
    expect(loaded).toMatchObject({ endpoint: 'local', flavor: 'lmstudio', loaded: true, context_length: 16384 });
    expect(loaded?.notes?.join(' ')).toContain('lms load qwen3-8b --parallel N');
    const sent = lmstudio.requests.find((r) => r.path === '/api/v1/models/load');
    expect(sent?.body).toMatchObject({ model: 'qwen3-8b', context_length: 16384, ttl: 600 });

    // Loaded already with that context: no second instance (LM Studio would make `qwen3-8b:2`).
    const again = resultsOf(
      await c.call('lmstudio_models', { action: 'load', model: 'qwen3-8b', context_length: 16384 }),
    );
    expect(again[0]?.notes?.join(' ')).toContain('loaded already');
    expect(lmstudio.loads).toBe(1);

    // Another context: the instance is unloaded, then loaded with it.
    const bigger = resultsOf(
      await c.call('lmstudio_models', { action: 'load', model: 'qwen3-8b', context_length: 32768 }),
    );
    expect(bigger[0]).toMatchObject({ loaded: true, context_length: 32768 });
    expect([lmstudio.unloads, lmstudio.loads]).toEqual([1, 2]);

    const unload = resultsOf(await c.call('lmstudio_models', { action: 'unload', model: 'qwen3-8b' }));
    expect(unload[0]).toMatchObject({ loaded: false });
    expect(lmstudio.requests.filter((r) => r.path === '/api/v1/models/unload').at(-1)?.body).toEqual({
      instance_id: 'qwen3-8b',
    });
    const twice = await c.call('lmstudio_models', { action: 'unload', model: 'qwen3-8b' });
    expect(twice.isError).toBe(true);
    expect(textOf(twice)).toContain('MODEL_NOT_LOADED');
  });

  it("loads on Ollama with keep_alive and num_ctx (numbers), says the OpenAI API reloads at the server's default, and unloads", async () => {
    const ollama = await OllamaDouble.start({ models: [{ name: 'qwen3:latest' }, { name: 'gemma3:4b' }] });
    cleanups.push(() => ollama.close());
    const c = await serverOn(ollama.url);

    const [loaded] = resultsOf(
      await c.call('lmstudio_models', { action: 'load', model: 'qwen3', context_length: 16384, ttl_seconds: 900 }),
    );
    expect(loaded).toMatchObject({ flavor: 'ollama', model: 'qwen3:latest', loaded: true, context_length: 16384 });
    expect(loaded?.notes?.join(' ')).toContain('OLLAMA_CONTEXT_LENGTH=16384');
    const generate = ollama.requests.filter((r) => r.path === '/api/generate');
    expect(generate.at(-1)?.body).toEqual({
      model: 'qwen3:latest',
      prompt: '',
      stream: false,
      keep_alive: 900,
      options: { num_ctx: 16384 },
    });

    // No TTL: kept loaded (keep_alive -1 as a number; Ollama refuses the string "-1").
    resultsOf(await c.call('lmstudio_models', { action: 'load', model: 'gemma3:4b' }));
    expect(ollama.requests.filter((r) => r.path === '/api/generate').at(-1)?.body).toMatchObject({ keep_alive: -1 });
    expect(ollama.loaded('gemma3:4b')).toEqual({ context: 4096, expiresAt: undefined });

    const [unloaded] = resultsOf(await c.call('lmstudio_models', { action: 'unload', model: 'qwen3' }));
    expect(unloaded).toMatchObject({ loaded: false });
    expect(ollama.loaded('qwen3')).toBeUndefined();
    // A context no model takes (a model's hostile call) never reaches the server: Ollama would try to allocate it.
    const before = ollama.requests.length;
    const absurd = await c.call('lmstudio_models', { action: 'load', model: 'qwen3', context_length: 1e12 });
    expect(absurd.isError).toBe(true);
    expect(textOf(absurd)).toMatch(/INVALID_INPUT: context_length 1000000000000 is more than any model takes/);
    expect(ollama.requests).toHaveLength(before);
    const job = await c.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }], context_length: 1e12 });
    expect(job.isError).toBe(true);
    expect(textOf(job)).toContain('is more than any model takes');
  });

  it('loads through router-mode llama-server, waits for the status, and reports a child that failed clearly', async () => {
    const router = await LlamaRouterDouble.start({ models: [{ id: 'tiny' }, { id: 'small' }], loadMs: 100 });
    cleanups.push(() => router.close());
    const c = await serverOn(router.url);

    const [loaded] = resultsOf(
      await c.call('lmstudio_models', { action: 'load', model: 'tiny', context_length: 8192 }),
    );
    expect(loaded).toMatchObject({ flavor: 'llama-server', loaded: true, context_length: 2048 });
    expect(loaded?.notes?.join(' ')).toContain('--models-preset');
    expect(router.requests.filter((r) => r.path === '/models/load').map((r) => r.body)).toEqual([{ model: 'tiny' }]);

    const [unloaded] = resultsOf(await c.call('lmstudio_models', { action: 'unload', model: 'tiny' }));
    expect(unloaded).toMatchObject({ loaded: false });
    expect(router.status('tiny')).toEqual({ value: 'unloaded' });

    const failing = await LlamaRouterDouble.start({ models: [{ id: 'tiny' }], failLoads: true });
    cleanups.push(() => failing.close());
    const f = await serverOn(failing.url);
    const failed = await f.call('lmstudio_models', { action: 'load', model: 'tiny' });
    expect(failed.isError).toBe(true);
    expect(textOf(failed)).toMatch(/MODEL_NOT_LOADED.*could not load tiny.*exited with code 1/s);
  });

  it('refuses servers that cannot load over HTTP, and requests missing their model', async () => {
    const plain = await LmStudioDouble.start({ flavor: 'openai', models: [{ id: 'meta/llama-3' }] });
    cleanups.push(() => plain.close());
    const c = await serverOn(plain.url);
    const refused = await c.call('lmstudio_models', { action: 'load', model: 'meta/llama-3' });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toContain('cannot load or unload models over HTTP');

    const noModel = await c.call('lmstudio_models', { action: 'unload' });
    expect(textOf(noModel)).toContain('needs model');
    const unknown = await c.call('lmstudio_models', { action: 'load', model: 'nope', endpoint: 'local' });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toContain('MODEL_NOT_FOUND');
  });
});
