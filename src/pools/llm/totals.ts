import type { JobTotals } from '../../engine/types.js';

/** A job's tokens processed locally so far. */
export interface LlmTotals {
  prompt: number;
  completion: number;
}

/**
 * The LLM kind's job totals: tokens processed locally, summed over a job's results (their
 * tokens_in / tokens_out), and the completion rate over the job's time. Needs no pool: anything
 * holding a job's records can sum them.
 */
export const llmTotals: JobTotals<LlmTotals> = {
  add(totals, value) {
    const v = value as { tokens_in?: unknown; tokens_out?: unknown } | null;
    const prompt = typeof v?.tokens_in === 'number' ? v.tokens_in : 0;
    const completion = typeof v?.tokens_out === 'number' ? v.tokens_out : 0;
    if (prompt + completion === 0) return totals;
    return { prompt: (totals?.prompt ?? 0) + prompt, completion: (totals?.completion ?? 0) + completion };
  },
  view(totals, elapsedMs) {
    const seconds = elapsedMs / 1000;
    const rate = seconds > 0 ? Math.round(totals.completion / seconds) : undefined;
    return {
      fields: {
        tokens: { prompt: totals.prompt, completion: totals.completion, completion_per_second: rate ?? null },
      },
      text: `${totals.prompt + totals.completion} tokens processed locally (${totals.prompt} in, ${totals.completion} out${rate === undefined ? '' : ` at ${rate} tok/s out`})`,
    };
  },
};
