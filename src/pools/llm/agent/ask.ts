import type { TaskContext, TaskResult } from '../../../engine/types.js';
import type { Completer, Settle } from '../completion.js';
import type { Endpoints } from '../endpoints.js';
import { LlmError } from '../errors.js';
import type { ChatAnswer, ChatMessage, LlmJobOptions, ToolSpec } from '../types.js';
import type { Usage } from '../usage.js';
import { noteSpent } from '../judge.js';

/** One answered step: what came back, from where. */
export interface Answered {
  answer: ChatAnswer;
  endpoint: string;
  tokensIn: number;
  tokensOut: number;
}

/**
 * One model request of an investigation, through the kind's request path (routing to the least busy
 * endpoint, failover, retries with backoff): the slot is held for the request only, so while this
 * agent runs its tools the slot serves another. The answer is taken as it is (no judging: the loop
 * reads its calls); an empty one, with no call either, is retried once like any empty answer.
 */
export async function askStep(
  completer: Completer,
  endpoints: Endpoints,
  task: TaskContext,
  options: LlmJobOptions,
  messages: ChatMessage[],
  tools: readonly ToolSpec[] | undefined,
  usage: Usage,
  final?: (error: unknown) => boolean,
): Promise<Answered | { failed: TaskResult }> {
  let answered: Answered | undefined;
  const settle: Settle = (run, endpoint, answer) => {
    const before = { in: usage.promptTokens, out: usage.completionTokens };
    noteSpent(usage, run, endpoint, answer, endpoints);
    if (answer.content.trim() === '' && (answer.toolCalls ?? []).length === 0) {
      const error = new LlmError(
        'EMPTY_ANSWER',
        `Endpoint ${endpoint} returned an empty answer (no text, no tool call).`,
        {
          hint: 'It was tried once more. Check the server log; an empty answer can mean the conversation overflowed the context.',
          retryable: true,
        },
      );
      return Promise.resolve({ kind: 'retry', error });
    }
    answered = {
      answer,
      endpoint,
      tokensIn: usage.promptTokens - before.in,
      tokensOut: usage.completionTokens - before.out,
    };
    return Promise.resolve({ kind: 'done', result: { ok: true } });
  };
  // One agent's conversation grows step by step: its steps go to the slot holding the last one.
  const prefixKey = `agent ${task.jobId}#${task.index}`;
  const result = await completer.complete(task, options, messages, {}, String(task.index), {
    tools,
    settle,
    final,
    prefixKey,
  });
  if (result.ok && answered !== undefined) return answered;
  return { failed: result };
}
