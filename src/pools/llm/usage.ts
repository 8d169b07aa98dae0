import { estimateTokens } from './template.js';
import { MOST_TASK_TOKENS } from './totals.js';
import type { ChatAnswer, ChatMessage } from './types.js';

/** What one task's requests spent so far; `estimated` when a server sent no counts. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  estimated: boolean;
}

/** Adds the server's token counts, or an estimate (flagged) when it sent none. */
export function addUsage(usage: Usage, answer: ChatAnswer, conversation: readonly ChatMessage[]): void {
  if (answer.promptTokens !== undefined) usage.promptTokens += answer.promptTokens;
  else {
    usage.promptTokens += estimateTokens(conversation.map((m) => m.content).join('\n'));
    usage.estimated = true;
  }
  if (answer.completionTokens !== undefined) usage.completionTokens += answer.completionTokens;
  else {
    usage.completionTokens += estimateTokens(answer.content + answer.reasoning);
    usage.estimated = true;
  }
}

/** More requests than this in one task's figures is a damaged record, not a count. */
const MOST_TASK_REQUESTS = 1_000_000;

/** A whole number from 0 to `most`, else undefined. */
function figure(value: unknown, most: number): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= most ? value : undefined;
}

/** Tokens and requests spent by several answers (their values), summed. */
export function sumUsage(values: ReadonlyArray<unknown>): Record<string, number> {
  const sum = { tokens_in: 0, tokens_out: 0, requests: 0 };
  for (const value of values) {
    const v = value as { tokens_in?: unknown; tokens_out?: unknown; requests?: unknown } | undefined;
    sum.tokens_in += figure(v?.tokens_in, MOST_TASK_TOKENS) ?? 0;
    sum.tokens_out += figure(v?.tokens_out, MOST_TASK_TOKENS) ?? 0;
    sum.requests += figure(v?.requests, MOST_TASK_REQUESTS) ?? 1;
  }
  return sum;
}
