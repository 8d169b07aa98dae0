import { estimateTokens } from './template.js';
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

/** Tokens and requests spent by several answers (their values), summed. */
export function sumUsage(values: ReadonlyArray<unknown>): Record<string, number> {
  const sum = { tokens_in: 0, tokens_out: 0, requests: 0 };
  for (const value of values) {
    const v = value as { tokens_in?: unknown; tokens_out?: unknown; requests?: unknown } | undefined;
    if (typeof v?.tokens_in === 'number') sum.tokens_in += v.tokens_in;
    if (typeof v?.tokens_out === 'number') sum.tokens_out += v.tokens_out;
    sum.requests += typeof v?.requests === 'number' ? v.requests : 1;
  }
  return sum;
}
