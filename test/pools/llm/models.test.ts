import { describe, expect, it } from 'vitest';
import { isChatModel, matchModel, modelMatches } from '../../../src/pools/llm/models.js';

describe('model names', () => {
  it('matches names the way servers spell them, and refuses an ambiguous short name', () => {
    expect(matchModel('Qwen3-8B', ['qwen3-8b'])).toEqual({ id: 'qwen3-8b' });
    expect(matchModel('qwen3', ['qwen3:30b'])).toEqual({ id: 'qwen3:30b' });
    expect(matchModel('qwen3', ['qwen3:8b', 'qwen3:latest'])).toEqual({ id: 'qwen3:latest' });
    expect(matchModel('gemma', ['gemma:2', 'gemma:3'])).toEqual({ id: 'gemma:2' });
    expect(matchModel('gemma', ['gemma@q4_k_m'])).toEqual({ id: 'gemma@q4_k_m' });
    expect(matchModel('qwen3', ['qwen3:8b', 'qwen3:30b'])).toEqual({ ambiguous: ['qwen3:8b', 'qwen3:30b'] });
    expect(matchModel('qwen', ['qwen3:8b'])).toBeUndefined();
    expect(modelMatches('qwen3', 'qwen3:latest')).toBe(true);
    expect(modelMatches('qwen3', 'qwen2')).toBe(false);
  });

  it('tells chat models from embedding models, by type where the server gives one, else by name', () => {
    expect(isChatModel({ id: 'a', type: 'vlm' })).toBe(true);
    expect(isChatModel({ id: 'text-embedding-x', type: 'llm' })).toBe(true);
    expect(isChatModel({ id: 'b', type: 'embeddings' })).toBe(false);
    expect(isChatModel({ id: 'nomic-embed-text' })).toBe(false);
    expect(isChatModel({ id: 'qwen3' })).toBe(true);
  });
});
