import { describe, expect, it } from 'vitest';
import { splitReasoning } from '../../../src/pools/llm/reasoning.js';

describe('splitReasoning', () => {
  it('keeps a reasoning field apart', () => {
    expect(splitReasoning('The answer.', 'Because.')).toEqual({ answer: 'The answer.', reasoning: 'Because.' });
  });

  it('takes <think> blocks out of the content', () => {
    expect(splitReasoning('<think>Hmm, 2+2.</think>\n\n4')).toEqual({ answer: '4', reasoning: 'Hmm, 2+2.' });
  });

  it('treats an unclosed <think> (cut by max_tokens) as all reasoning', () => {
    expect(splitReasoning('<think>Still going')).toEqual({ answer: '', reasoning: 'Still going' });
  });

  it('splits at a stray </think> whose opening tag was in the prompt template', () => {
    expect(splitReasoning('thinking here</think>Answer')).toEqual({ answer: 'Answer', reasoning: 'thinking here' });
  });

  it('leaves plain answers alone', () => {
    expect(splitReasoning('Just text, with <b>tags</b>.')).toEqual({
      answer: 'Just text, with <b>tags</b>.',
      reasoning: '',
    });
  });
});
