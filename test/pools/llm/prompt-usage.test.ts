import { describe, expect, it } from 'vitest';
import { PromptUsage } from '../../../src/pools/llm/prompt-usage.js';

describe('PromptUsage', () => {
  it('learns a model’s bytes a token per endpoint only from 3 answered prompts and 256 tokens on', () => {
    const usage = new PromptUsage();
    usage.note('lm', 'qwen', 400, 100);
    usage.note('lm', 'qwen', 400, 100);
    expect(usage.bytesPerToken('lm', 'qwen')).toBeUndefined();
    usage.note('lm', 'qwen', 400, 100);
    expect(usage.bytesPerToken('lm', 'qwen')).toEqual({ bytes: 4, prompts: 3 });
    // Per endpoint and model; a prompt without a count teaches nothing.
    expect(usage.bytesPerToken('other', 'qwen')).toBeUndefined();
    usage.note('lm', 'gemma', 1000, 0);
    expect(usage.bytesPerToken('lm', 'gemma')).toBeUndefined();
  });
});
