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

  it('counts verdicts and the requests checks spent, only for results that carry a verdict', () => {
    const values = [
      {
        text: 'a',
        tokens_in: 10,
        tokens_out: 5,
        verified: true,
        checks: [{ name: 'citations', ok: true }],
        attempts: 1,
      },
      {
        text: 'b',
        tokens_in: 10,
        tokens_out: 5,
        verified: false,
        checks: [{ name: 'citations', ok: false, reason: 'x' }],
        extra_requests: { reask: 1, escalate: 1 },
      },
      { text: 'c', verified: true, checks: [{ name: 'agree', ok: true }], extra_requests: { agree: 2, reask: -5 } },
      // An agent's citation flag without checks is no verdict.
      { text: 'd', tokens_in: 1, tokens_out: 1, verified: 'yes' },
    ];
    const totals = values.reduce<ReturnType<typeof llmTotals.add>>((sum, v) => llmTotals.add(sum, v), undefined);
    expect(totals).toEqual({
      prompt: 21,
      completion: 11,
      verified: 2,
      unverified: 1,
      extra: { agree: 2, reask: 1, escalate: 1 },
    });
    const view = totals && llmTotals.view(totals, 1000);
    expect(view?.fields.verification).toEqual({
      verified: 2,
      unverified: 1,
      extra_requests: { agree: 2, reask: 1, escalate: 1 },
    });
    expect(view?.text).toContain(
      '2 verified, 1 unverified; 4 extra request(s) on checks (1 re-ask, 1 escalation, 2 agreement)',
    );
  });
});
