import type { JobTotals } from '../../engine/types.js';
import { MOST_TOKENS_PER_ANSWER } from './decoding.js';

/** A task's tokens over all its requests: many answers' worth, still far from overflowing a sum. */
export const MOST_TASK_TOKENS = 1000 * MOST_TOKENS_PER_ANSWER;

/** A job's tokens processed locally so far, and its answers' verdicts when it has checks. */
export interface LlmTotals {
  prompt: number;
  completion: number;
  /** Answers that passed their checks, and those kept with verified: false. */
  verified?: number;
  unverified?: number;
  /** Requests beyond one per answer spent on its checks: agreement samples, re-asks, escalations. */
  extra?: { agree: number; reask: number; escalate: number };
}

/**
 * A stored figure as a count: a whole number up to MOST_TASK_TOKENS, else 0 — records written before
 * answers were checked (decoding.ts), or edited by hand, may say 1e300 or -5, and sums stay finite.
 */
function count(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 && value <= MOST_TASK_TOKENS ? value : 0;
}

/** What one result's checks add: its verdict and the requests they spent. */
function addVerdict(totals: LlmTotals, v: Record<string, unknown>): void {
  if (typeof v.verified !== 'boolean' || !Array.isArray(v.checks)) return;
  if (v.verified) totals.verified = (totals.verified ?? 0) + 1;
  else totals.unverified = (totals.unverified ?? 0) + 1;
  const spent = (v.extra_requests ?? {}) as Record<string, unknown>;
  const extra = totals.extra ?? { agree: 0, reask: 0, escalate: 0 };
  extra.agree += count(spent.agree);
  extra.reask += count(spent.reask);
  extra.escalate += count(spent.escalate);
  totals.extra = extra;
}

/**
 * The LLM kind's job totals: tokens processed locally, summed over a job's results (their
 * tokens_in / tokens_out), the completion rate over the job's time, and with checks how many
 * answers were verified and what the checks cost. Needs no pool: anything holding a job's records
 * can sum them.
 */
export const llmTotals: JobTotals<LlmTotals> = {
  add(totals, value) {
    const v = (value ?? {}) as Record<string, unknown>;
    const prompt = count(v.tokens_in);
    const completion = count(v.tokens_out);
    const checked = typeof v.verified === 'boolean' && Array.isArray(v.checks);
    if (prompt + completion === 0 && !checked) return totals;
    const next: LlmTotals = {
      ...(totals ?? { prompt: 0, completion: 0 }),
      prompt: (totals?.prompt ?? 0) + prompt,
      completion: (totals?.completion ?? 0) + completion,
    };
    if (totals?.extra) next.extra = { ...totals.extra };
    addVerdict(next, v);
    return next;
  },
  view(totals, elapsedMs) {
    const seconds = elapsedMs / 1000;
    const rate = seconds > 0 ? Math.round(totals.completion / seconds) : undefined;
    const fields: Record<string, unknown> = {
      tokens: { prompt: totals.prompt, completion: totals.completion, completion_per_second: rate ?? null },
    };
    let text = `${totals.prompt + totals.completion} tokens processed locally (${totals.prompt} in, ${totals.completion} out${rate === undefined ? '' : ` at ${rate} tok/s out`})`;
    if (totals.verified !== undefined || totals.unverified !== undefined) {
      const extra = totals.extra ?? { agree: 0, reask: 0, escalate: 0 };
      fields.verification = {
        verified: totals.verified ?? 0,
        unverified: totals.unverified ?? 0,
        extra_requests: extra,
      };
      const spent = extra.agree + extra.reask + extra.escalate;
      text += `; ${totals.verified ?? 0} verified, ${totals.unverified ?? 0} unverified; ${spent} extra request(s) on checks (${extra.reask} re-ask, ${extra.escalate} escalation, ${extra.agree} agreement)`;
    }
    return { fields, text };
  },
};
