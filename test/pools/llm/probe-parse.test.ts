import { describe, expect, it } from 'vitest';
import {
  lmStudioInstances,
  looksLikeVllm,
  ollamaModels,
  parseLlamaProps,
  parseLlamaSlots,
  parseLmStudioV1,
  parseOllamaList,
  parseRouterModels,
  routerStatus,
} from '../../../src/pools/llm/probe-parse.js';

// Shapes captured from the real servers (llama-server b11669 here; LM Studio and Ollama from their docs).
describe('what each server says about itself', () => {
  it("reads llama-server's /props: slots and context per slot; a router has neither until a model loads", () => {
    expect(
      parseLlamaProps({
        default_generation_settings: { params: { seed: 1 }, n_ctx: 2048 },
        total_slots: 6,
        model_alias: 'tiny',
        build_info: 'b11669-Debian',
      }),
    ).toEqual({ router: false, slots: 6, contextPerSlot: 2048 });
    expect(
      parseLlamaProps({
        role: 'router',
        max_instances: 4,
        model_path: 'none',
        default_generation_settings: { params: null, n_ctx: 0 },
      }),
    ).toEqual({ router: true });
    // LM Studio answers unknown paths with 200 and an error; others with lists: none is llama-server.
    expect(parseLlamaProps({ error: 'Unexpected endpoint or method. (GET /props)' })).toBeUndefined();
    expect(parseLlamaProps(undefined)).toBeUndefined();
    expect(parseLlamaProps({ total_slots: 'six', default_generation_settings: null })).toBeUndefined();
  });

  it("counts llama-server's busy slots (is_processing, or state 1 on older builds)", () => {
    expect(
      parseLlamaSlots([
        { id: 0, n_ctx: 2048, is_processing: true },
        { id: 1, n_ctx: 2048, is_processing: false },
        { id: 2, n_ctx: 2048, is_processing: true },
      ]),
    ).toEqual({ total: 3, busy: 2 });
    expect(
      parseLlamaSlots([
        { id: 0, state: 1 },
        { id: 1, state: 0 },
      ]),
    ).toEqual({ total: 2, busy: 1 });
    expect(parseLlamaSlots([])).toBeUndefined();
    expect(parseLlamaSlots({ error: 'This server does not support slots endpoint.' })).toBeUndefined();
  });

  it("reads LM Studio's /api/v1/models: state, context and parallel per loaded instance; slots summed over LLMs", () => {
    const found = parseLmStudioV1({
      models: [
        {
          type: 'llm',
          key: 'qwen/qwen3-8b',
          display_name: 'Qwen3 8B',
          max_context_length: 40960,
          loaded_instances: [{ id: 'qwen/qwen3-8b', config: { context_length: 16384, parallel: 6 } }],
        },
        { type: 'llm', key: 'openai/gpt-oss-20b', max_context_length: 131072, loaded_instances: [] },
        {
          type: 'embedding',
          key: 'nomic-embed',
          max_context_length: 2048,
          loaded_instances: [{ id: 'nomic-embed', config: { context_length: 2048, parallel: 4 } }],
        },
      ],
    });
    expect(found?.slots).toBe(6);
    expect(found?.models).toEqual([
      {
        id: 'qwen/qwen3-8b',
        type: 'llm',
        state: 'loaded',
        contextLength: 16384,
        maxContextLength: 40960,
        parallel: 6,
      },
      { id: 'openai/gpt-oss-20b', type: 'llm', state: 'not-loaded', maxContextLength: 131072 },
      {
        id: 'nomic-embed',
        type: 'embeddings',
        state: 'loaded',
        contextLength: 2048,
        maxContextLength: 2048,
        parallel: 4,
      },
    ]);
    // Nothing loaded (JIT): no slot count, the default stands.
    expect(parseLmStudioV1({ models: [{ key: 'a', type: 'llm', loaded_instances: [] }] })?.slots).toBeUndefined();
    expect(parseLmStudioV1({ data: [] })).toBeUndefined();
  });

  it("reads Ollama's pulled models (/api/tags) and the loaded ones with their context (/api/ps)", () => {
    const pulled = parseOllamaList({
      models: [
        { name: 'llama3.2:latest', model: 'llama3.2:latest', digest: 'a80c4f17acd5', size: 2019393189 },
        { name: 'qwen3:8b', model: 'qwen3:8b', digest: '500a1f067a9f' },
      ],
    });
    const loaded = parseOllamaList({
      models: [
        {
          name: 'qwen3:8b',
          model: 'qwen3:8b',
          size_vram: 5e9,
          expires_at: '2026-12-06T20:00:00Z',
          context_length: 8192,
        },
      ],
    });
    expect(ollamaModels(pulled ?? [], loaded ?? [])).toEqual([
      { id: 'llama3.2:latest', state: 'not-loaded' },
      { id: 'qwen3:8b', state: 'loaded', contextLength: 8192 },
    ]);
    expect(parseOllamaList({ error: { message: 'File Not Found' } })).toBeUndefined();
  });

  it('reads a llama-server router: each model loaded or not, the listed context being its largest', () => {
    const json = {
      data: [
        { id: 'tiny', object: 'model', status: { value: 'loaded', args: [] }, context_length: 32768 },
        { id: 'big', object: 'model', status: { value: 'unloaded', failed: true, exit_code: 1 }, context_length: 4096 },
      ],
      object: 'list',
    };
    expect(parseRouterModels(json)).toEqual([
      { id: 'tiny', state: 'loaded', maxContextLength: 32768 },
      { id: 'big', state: 'not-loaded', maxContextLength: 4096 },
    ]);
  });

  it('knows vLLM by its model list', () => {
    expect(
      looksLikeVllm({ object: 'list', data: [{ id: 'Qwen/Qwen3-8B', owned_by: 'vllm', max_model_len: 32768 }] }),
    ).toBe(true);
    expect(looksLikeVllm({ object: 'list', data: [{ id: 'tiny', owned_by: 'llamacpp' }] })).toBe(false);
    expect(looksLikeVllm(undefined)).toBe(false);
  });

  it("reads router-mode llama-server's status and LM Studio's instances as the servers write them", () => {
    const list = {
      data: [
        { id: 'tiny', status: { value: 'unloaded', args: [], exit_code: 1, failed: true } },
        { id: 'other', status: { value: 'loading' } },
      ],
      object: 'list',
    };
    expect(routerStatus(list, 'tiny')).toEqual({ value: 'unloaded', failed: true, exitCode: 1 });
    expect(routerStatus(list, 'other')).toEqual({ value: 'loading', failed: false });
    expect(routerStatus(list, 'nope')).toBeUndefined();
    expect(routerStatus({ error: 'x' }, 'tiny')).toBeUndefined();
    const v1 = {
      models: [
        {
          key: 'qwen3-8b',
          loaded_instances: [{ id: 'qwen3-8b', config: { context_length: 8192, parallel: 4 } }, { id: 'qwen3-8b:2' }],
        },
        { key: 'cold', loaded_instances: [] },
      ],
    };
    expect(lmStudioInstances(v1, 'qwen3-8b')).toEqual([{ id: 'qwen3-8b', contextLength: 8192 }, { id: 'qwen3-8b:2' }]);
    expect(lmStudioInstances(v1, 'cold')).toEqual([]);
    expect(lmStudioInstances(null, 'cold')).toEqual([]);
  });
});
