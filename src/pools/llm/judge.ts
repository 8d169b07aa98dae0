import type { TaskResult } from '../../engine/types.js';
import { keepText } from './answer-files.js';
import { type Completion, failure, type Outcome } from './completion-state.js';
import type { Endpoints } from './endpoints.js';
import { LlmError } from './errors.js';
import { splitReasoning } from './reasoning.js';
import type { SchemaValidator } from './schema.js';
import type { ChatAnswer } from './types.js';
import { addUsage, type Usage } from './usage.js';

/** What judging an answer uses: the endpoints (to note what the answer taught), the schema checker, the inline cap. */
export interface JudgeDeps {
  endpoints: Endpoints;
  schemas: SchemaValidator;
  maxInlineChars: number;
}

type Split = ReturnType<typeof splitReasoning>;

/**
 * What an answer spent: added to `usage` (a task's), and told to the endpoint (its token rate, and
 * the bytes a token its prompt measured, which sizes later prompts).
 */
export function noteSpent(
  usage: Usage,
  run: Completion,
  endpoint: string,
  answer: ChatAnswer,
  endpoints: Endpoints,
): void {
  addUsage(usage, answer, run.conversation);
  endpoints.noteTokens(endpoint, answer.completionTokens ?? 0);
  if (answer.promptTokens !== undefined)
    endpoints.noteUsage(
      endpoint,
      run.options.model,
      run.conversation.reduce((n, m) => n + Buffer.byteLength(m.content), 0),
      answer.promptTokens,
    );
}

/** An answer came back: empty, off-schema (one corrective retry) or good. */
export async function judge(run: Completion, endpoint: string, answer: ChatAnswer, deps: JudgeDeps): Promise<Outcome> {
  const { options } = run;
  noteSpent(run.usage, run, endpoint, answer, deps.endpoints);
  const split = splitReasoning(answer.content, answer.reasoning);
  const truncated = answer.finishReason === 'length';
  const figures = answerFigures(run, endpoint, answer, truncated);
  if (split.answer.length === 0) return emptyAnswer(run, endpoint, answer, split, figures);
  let json: unknown;
  if (options.json_schema !== undefined) {
    const check = deps.schemas.check(options.json_schema, split.answer);
    // A job with checks re-asks an off-schema answer itself (checks/verify.ts): here it is kept as text.
    if (check.ok) json = check.value;
    else if (options.checks === undefined) return offSchema(run, split.answer, check.error, figures, deps);
  }
  return { kind: 'done', result: await goodAnswer(run, answer, split, json, figures, deps) };
}

/** The kind's own figures of an answer: where and how it ran, what it spent, whether max_tokens cut it. */
function answerFigures(
  run: Completion,
  endpoint: string,
  answer: ChatAnswer,
  truncated: boolean,
): Record<string, unknown> {
  const figures: Record<string, unknown> = {
    model: answer.model,
    endpoint,
    finish_reason: answer.finishReason,
    truncated,
    tokens_in: run.usage.promptTokens,
    tokens_out: run.usage.completionTokens,
    duration_ms: Math.round(answer.durationMs),
  };
  if (answer.ttftMs !== undefined) figures.ttft_ms = Math.round(answer.ttftMs);
  if (run.usage.estimated) figures.tokens_estimated = true;
  // Invalid UTF-8, token counts that were none (decoding.ts): said, as a script's output says it.
  if (answer.notes !== undefined && answer.notes.length > 0) figures.notes = [...answer.notes];
  if (run.requests > 1) figures.requests = run.requests;
  return figures;
}

/** No answer: all of max_tokens spent reasoning fails at once; otherwise it is tried once more. */
function emptyAnswer(
  run: Completion,
  endpoint: string,
  answer: ChatAnswer,
  split: Split,
  figures: Record<string, unknown>,
): Outcome {
  if (split.reasoning.length > 0 && figures.truncated === true) {
    const error = new LlmError(
      'EMPTY_ANSWER',
      `The model spent all ${run.options.max_tokens ?? 'its'} max_tokens reasoning and gave no answer.`,
      {
        hint: 'Raise max_tokens (reasoning models need room to think before they answer).',
      },
    );
    return { kind: 'fail', error, extra: figures };
  }
  const error = new LlmError(
    'EMPTY_ANSWER',
    `Endpoint ${endpoint} returned an empty answer (finish_reason ${answer.finishReason ?? 'none'}).`,
    {
      hint: 'It was tried once more. Check the prompt and the server log; an empty answer can mean the prompt overflowed the context.',
      retryable: true,
    },
  );
  return { kind: 'retry', error, extra: figures };
}

/** An answer off json_schema: asked once more saying why, then failed with the raw answer kept as the output. */
async function offSchema(
  run: Completion,
  text: string,
  why: string,
  figures: Record<string, unknown>,
  deps: JudgeDeps,
): Promise<Outcome> {
  const schema = run.options.json_schema;
  if (!run.schemaRetried) {
    run.schemaRetried = true;
    run.conversation = [
      ...run.messages,
      { role: 'assistant', content: text },
      {
        role: 'user',
        content: `That answer does not match the required JSON schema: ${why}. Reply again with only the JSON value, matching this schema exactly:\n${JSON.stringify(schema)}`,
      },
    ];
    return { kind: 'again' };
  }
  const truncated = figures.truncated === true;
  const raw = await keepText(run.task.outputDir, run.stem, text, 'answer', deps.maxInlineChars);
  const error = new LlmError(
    'SCHEMA_INVALID',
    `The answer does not match json_schema, also after one corrective retry: ${why}.${truncated ? ' It was cut off by max_tokens.' : ''}`,
    {
      hint: truncated
        ? 'Raise max_tokens so the JSON can be completed.'
        : 'Simplify the schema or the prompt, or try a stronger model. The raw answer is in `text`.',
    },
  );
  const failed = failure(run, error, { ...figures, ...raw.inline });
  return { kind: 'done', result: raw.file === undefined ? failed : { ...failed, files: { output: raw.file } } };
}

/** A good answer's result: its text (or JSON), reasoning when asked for, and its figures. */
async function goodAnswer(
  run: Completion,
  answer: ChatAnswer,
  split: Split,
  json: unknown,
  figures: Record<string, unknown>,
  deps: JudgeDeps,
): Promise<TaskResult> {
  const { task, options } = run;
  const value: Record<string, unknown> = { ...run.base };
  const files: Record<string, string> = {};
  const kept = await keepText(task.outputDir, run.stem, split.answer, 'answer', deps.maxInlineChars);
  if (kept.file !== undefined) files.output = kept.file;
  if (json !== undefined) value.json = json;
  else Object.assign(value, kept.inline);
  if (options.include_reasoning && split.reasoning.length > 0) {
    const reasoning = await keepText(task.outputDir, run.stem, split.reasoning, 'reasoning', deps.maxInlineChars);
    if (reasoning.file !== undefined) files.reasoning = reasoning.file;
    Object.assign(value, reasoning.inline);
  }
  Object.assign(value, figures);
  if (answer.durationMs > 0 && answer.completionTokens !== undefined)
    value.tokens_per_second = Math.round(answer.completionTokens / (answer.durationMs / 1000));
  const result: TaskResult = { ok: true, value };
  if (Object.keys(files).length > 0) result.files = files;
  return result;
}
