import { describe, expect, it } from 'vitest';
import { llmTotals } from '../../../src/pools/llm/totals.js';

describe('llmTotals', () => {
  it('sums tokens_in and tokens_out over results without a pool, and skips values that spent none', () => {
    const values = [
      { text: 'a', tokens_in: 10, tokens_out: 30 },
      { error: 'no tokens' },
      { json: { ok: true }, tokens_in: 5, tokens_out: 10 },
      null,
    ];
    const totals = values.reduce<ReturnType<typeof llmTotals.add>>(
      (sum, value) => llmTotals.add(sum, value),
      undefined,
    );
    expect(totals).toEqual({ prompt: 15, completion: 40 });
    expect(llmTotals.add(undefined, { tokens_in: 0, tokens_out: 0 })).toBeUndefined();
  });

  it('shows the tokens and the completion rate over the elapsed time, with no rate before any time passed', () => {
    expect(llmTotals.view({ prompt: 15, completion: 40 }, 2000)).toEqual({
      fields: { tokens: { prompt: 15, completion: 40, completion_per_second: 20 } },
      text: '55 tokens processed locally (15 in, 40 out at 20 tok/s out)',
    });
    expect(llmTotals.view({ prompt: 1, completion: 2 }, 0)?.fields).toEqual({
      tokens: { prompt: 1, completion: 2, completion_per_second: null },
    });
  });
});
