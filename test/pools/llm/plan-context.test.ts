import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/registry.js';
import type { Config } from '../../../src/registry.js';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';
import { type DoubleModel, LmStudioDouble } from '../../fixtures/lmstudio-double.js';
import { OllamaDouble } from '../../fixtures/ollama-double.js';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { type Connected, connectInMemory, repoRoot, testConfig, textOf } from '../../helpers/client.js';

const cleanups = cleanupsAfterEach();

async function serverOn(
  url: string,
  flavor: EndpointConfig['flavor'],
  edit: (c: Config) => void = () => {},
): Promise<Connected> {
  const config = await testConfig((c) => {
    c.llm.endpoints = [{ name: 'local', url, concurrency: 4, models: [], flavor }];
    edit(c);
  });
  const c = await connectInMemory(config);
  cleanups.push(() => c.close());
  return c;
}

async function lmStudio(models: DoubleModel[]): Promise<LmStudioDouble> {
  const double = await LmStudioDouble.start({ models });
  cleanups.push(() => double.close());
  return double;
}

function notesOf(reply: Awaited<ReturnType<Connected['call']>>): string {
  expect(reply.isError, textOf(reply)).toBeFalsy();
  return ((reply.structuredContent as { notes?: string[] }).notes ?? []).join('\n');
}

const loadsOf = (double: LmStudioDouble): unknown[] =>
  double.requests.filter((r) => r.path === '/api/v1/models/load').map((r) => r.body);

describe('a job asking for a context', () => {
  it('says up front that the loaded instance is smaller, with the setting and the command, and loads nothing by default', async () => {
    const double = await lmStudio([{ id: 'qwen3-8b', state: 'loaded', contextLength: 4096, maxContextLength: 32768 }]);
    const c = await serverOn(double.url, 'lmstudio');
    const reply = await c.call('lmstudio_complete', {
      prompts: [{ prompt: 'hi' }],
      model: 'qwen3-8b',
      context_length: 16384,
    });
    const notes = notesOf(reply);
    expect(notes).toContain('loaded with a context of 4096 tokens, less than the 16384 asked');
    expect(notes).toContain('llm.allowModelLoad');
    expect(notes).toContain('lms load qwen3-8b --context-length 16384');
    expect(loadsOf(double)).toEqual([]);
  });

  it('loads the model with that context (unloading the smaller instance, with a TTL like a JIT load) when llm.allowModelLoad is on', async () => {
    const double = await lmStudio([{ id: 'qwen3-8b', state: 'loaded', contextLength: 4096, maxContextLength: 32768 }]);
    const c = await serverOn(double.url, 'lmstudio', (config) => {
      config.llm.allowModelLoad = true;
    });
    const reply = await c.call('lmstudio_complete', {
      prompts: [{ prompt: 'hi' }],
      model: 'qwen3-8b',
      context_length: 16384,
      wait_seconds: 20,
    });
    expect(notesOf(reply)).toMatch(/Loaded it with context 16384 \(now 16384\)/);
    expect(double.unloads).toBe(1);
    expect(loadsOf(double)).toEqual([{ model: 'qwen3-8b', echo_load_config: true, context_length: 16384, ttl: 3600 }]);
    expect(double.model('qwen3-8b')?.contextLength).toBe(16384);
    expect(textOf(reply)).toContain('Answer to: hi');
  });

  it('loads a model that is not loaded with the context asked, instead of a just-in-time load at the default', async () => {
    const double = await lmStudio([
      { id: 'qwen3-8b', state: 'not-loaded', contextLength: 4096, maxContextLength: 32768 },
    ]);
    const c = await serverOn(double.url, 'lmstudio', (config) => {
      config.llm.allowModelLoad = true;
    });
    const reply = await c.call('lmstudio_investigate', {
      tasks: [{ task: 'What is here?' }],
      model: 'qwen3-8b',
      context_length: 8192,
    });
    expect(notesOf(reply)).toContain('is not loaded');
    expect(loadsOf(double)).toEqual([{ model: 'qwen3-8b', echo_load_config: true, context_length: 8192, ttl: 3600 }]);
  });

  it('says nothing and loads nothing when the loaded context is enough or none is asked (JIT as before)', async () => {
    const double = await lmStudio([
      { id: 'big', state: 'loaded', contextLength: 32768 },
      { id: 'cold', state: 'not-loaded', contextLength: 4096 },
    ]);
    const c = await serverOn(double.url, 'lmstudio', (config) => {
      config.llm.allowModelLoad = true;
    });
    const enough = await c.call('lmstudio_complete', {
      prompts: [{ prompt: 'a' }],
      model: 'big',
      context_length: 8192,
    });
    expect(notesOf(enough)).not.toContain('asked');
    const none = await c.call('lmstudio_complete', { prompts: [{ prompt: 'b' }], model: 'cold', wait_seconds: 20 });
    expect(notesOf(none)).not.toContain('context');
    expect(loadsOf(double)).toEqual([]);
    expect(textOf(none)).toContain('Answer to: b');
  });

  it('on Ollama, says the OpenAI-compatible API cannot choose the context and how to set it, even when loading is allowed', async () => {
    const ollama = await OllamaDouble.start({ models: [{ name: 'qwen3:latest', loadedContext: 4096 }] });
    cleanups.push(() => ollama.close());
    const c = await serverOn(ollama.url, 'openai', (config) => {
      config.llm.allowModelLoad = true;
    });
    const reply = await c.call('lmstudio_complete', {
      prompts: [{ prompt: 'hi' }],
      model: 'qwen3',
      context_length: 16384,
    });
    expect(notesOf(reply)).toContain('OLLAMA_CONTEXT_LENGTH=16384');
    expect(ollama.requests.filter((r) => r.path === '/api/generate')).toEqual([]);
  });

  it('llm.allowModelLoad is off by default and set by MONITOR_ALLOW_MODEL_LOAD', () => {
    const sources = { argv: [], home: '/home/u', cpus: 2, packageRoot: repoRoot, cwd: '/work' };
    expect(parseConfig({ ...sources, env: {} }).llm.allowModelLoad).toBe(false);
    expect(parseConfig({ ...sources, env: { MONITOR_ALLOW_MODEL_LOAD: '1' } }).llm.allowModelLoad).toBe(true);
    const fromFile = parseConfig({ ...sources, env: {}, fileText: JSON.stringify({ llm: { allowModelLoad: true } }) });
    expect(fromFile.llm.allowModelLoad).toBe(true);
  });
});
