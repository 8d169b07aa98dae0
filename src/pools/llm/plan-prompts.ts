import { MonitorError } from '../../errors.js';
import type { LlmJobRequest } from './plan-types.js';
import { checkPlaceholders, placeholdersOf } from './template.js';
import type { ChatMessage, LlmTaskInput } from './types.js';

type PromptRequest = NonNullable<LlmJobRequest['prompts']>;

/** One task per prompt (or conversation), its id given or its position. */
export function promptInputs(prompts: PromptRequest, hasSystem: boolean): LlmTaskInput[] {
  return prompts.map((p, i): LlmTaskInput => ({
    id: p.id ?? String(i + 1),
    messages: toMessages(p, i, hasSystem),
  }));
}

/** One task per result of the upstream job, its template filled from that result when it runs. */
export function upstreamInputs(template: string, labels: readonly string[]): LlmTaskInput[] {
  if (placeholdersOf(template).length === 0) checkPlaceholders(template, new Set(['output', 'id']), 'each result');
  return labels.map((label): LlmTaskInput => ({ id: label, upstream: true }));
}

function toMessages(p: PromptRequest[number], index: number, hasSystem: boolean): ChatMessage[] {
  if ((p.prompt === undefined) === (p.messages === undefined)) {
    throw new MonitorError('INVALID_INPUT', `prompts[${index}] needs exactly one of prompt or messages.`, {
      hint: 'e.g. {"prompt": "Explain …"}',
    });
  }
  if (hasSystem && p.messages?.[0]?.role === 'system') {
    throw new MonitorError(
      'INVALID_INPUT',
      `prompts[${index}] starts with its own system message, and \`system\` is given too: only one can be used.`,
      {
        hint: "Drop `system`, or drop the system message from that prompt's messages (or put the text of both into one).",
      },
    );
  }
  return p.messages ?? [{ role: 'user', content: p.prompt ?? '' }];
}
