import { describe, expect, it } from 'vitest';
import { MonitorError } from '../../../src/errors.js';
import { answerFromCompletion, parseLmStudioModels, parseOpenAiModels } from '../../../src/pools/llm/responses.js';

describe('response shapes', () => {
  it('reads LM Studio model lists: type, state and contexts, skipping items without an id', () => {
    const list = {
      data: [
        { id: 'qwen', type: 'llm', state: 'loaded', loaded_context_length: 8192, max_context_length: 32768 },
        { id: 'nomic', type: 'embedding', state: 'not-loaded', max_context_length: 0 },
        { name: 'no id' },
      ],
    };
    expect(parseLmStudioModels(list)).toEqual([
      { id: 'qwen', type: 'llm', state: 'loaded', contextLength: 8192, maxContextLength: 32768 },
      { id: 'nomic', type: 'embeddings', state: 'not-loaded' },
    ]);
    expect(parseLmStudioModels({ error: 'no list' })).toBeUndefined();
  });

  it('reads any OpenAI-compatible list, with the context where the server names it', () => {
    const list = {
      data: [
        { id: 'tiny', meta: { n_ctx: 2048, n_ctx_train: 4096 } },
        { id: 'vllm', max_model_len: 16384 },
        { id: 'plain', context_length: 'not a number' },
      ],
    };
    expect(parseOpenAiModels(list)).toEqual([
      { id: 'tiny', contextLength: 2048, maxContextLength: 4096 },
      { id: 'vllm', contextLength: 16384 },
      { id: 'plain' },
    ]);
  });

  it('makes an answer of a whole completion, and an UPSTREAM_ERROR of one without choices', () => {
    const json = {
      model: 'served:2',
      choices: [{ message: { content: '4', reasoning_content: 'two and two' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 12, completion_tokens: 3 },
    };
    expect(answerFromCompletion(json, 'served', 50, 'lm', 200)).toEqual({
      content: '4',
      reasoning: 'two and two',
      model: 'served:2',
      finishReason: 'stop',
      durationMs: 50,
      promptTokens: 12,
      completionTokens: 3,
    });
    let caught: unknown;
    try {
      answerFromCompletion({ choices: [] }, 'served', 50, 'lm', 200);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(MonitorError);
    expect((caught as MonitorError).code).toBe('UPSTREAM_ERROR');
  });

  it('reads message.tool_calls loosely: arguments as sent, an object as its JSON, hostile elements dropped', () => {
    const json = {
      choices: [
        {
          message: {
            content: null,
            tool_calls: [
              { id: 'x1', type: 'function', function: { name: 'read_file', arguments: '{"path":"a"}' } },
              { id: '', function: { name: 'grep', arguments: { pattern: 'TODO' } } },
              { function: { name: 'outline' } },
              { function: { arguments: '{}' } },
              { id: 3, function: { name: 7 } },
              null,
              'call',
              [1],
            ],
          },
          finish_reason: 'tool_calls',
        },
      ],
    };
    const answer = answerFromCompletion(json, 'm', 1, 'lm', 200);
    expect(answer.content).toBe('');
    expect(answer.finishReason).toBe('tool_calls');
    expect(answer.toolCalls).toEqual([
      { id: 'x1', name: 'read_file', arguments: '{"path":"a"}' },
      { name: 'grep', arguments: '{"pattern":"TODO"}' },
      { name: 'outline', arguments: '' },
    ]);
    for (const toolCalls of [[], 'not a list', { index: 0 }, null])
      expect(
        answerFromCompletion({ choices: [{ message: { content: 'x', tool_calls: toolCalls } }] }, 'm', 1, 'lm', 200),
      ).not.toHaveProperty('toolCalls');
  });
});
