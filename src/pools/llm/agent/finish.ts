import { splitReasoning } from '../reasoning.js';
import type { SchemaValidator } from '../schema.js';
import { type Citation, citationsFromText, parseCitations } from './citations.js';

/** How an investigation ended: its answer (text, or JSON under json_schema) and what it cites. */
export interface Finished {
  text: string;
  json?: unknown;
  citations: Citation[];
  /** Asked to finish after max_steps, rather than finished by itself. */
  cut: boolean;
  /** The model answered in plain text without calling finish (citations read from `path:line` mentions). */
  withoutTools?: boolean;
  /** The answer broke json_schema also after the corrective message. */
  schemaError?: string;
}

/** A plain-text answer (no tool call): its text, reasoning tags dropped, citations read from its `path:line` mentions. */
export function textAnswer(content: string, cut: boolean): Finished {
  const text = splitReasoning(content).answer.trim();
  return { text, citations: citationsFromText(text), cut, withoutTools: true };
}

/**
 * A `finish` call, read as hostile input: an answer (a non-empty string, or JSON matching the job's
 * json_schema) and its citations. A first bad answer gets one corrective message; a second one is
 * taken as it is (and fails the task under json_schema).
 */
export function finishCall(
  args: Record<string, unknown>,
  schema: Record<string, unknown> | undefined,
  schemas: SchemaValidator,
  corrected: boolean,
): { finished: Finished } | { correction: string } {
  const citations = parseCitations(args.citations);
  const answer = args.answer;
  const text = typeof answer === 'string' ? answer.trim() : answer === undefined ? '' : JSON.stringify(answer);
  if (schema === undefined) {
    if (text === '' && !corrected)
      return { correction: 'finish needs your answer in `answer` (text), with `citations`. Call finish again.' };
    return { finished: { text, citations, cut: false } };
  }
  const check = schemas.check(schema, text);
  if (check.ok) return { finished: { text, json: check.value, citations, cut: false } };
  if (!corrected)
    return {
      correction: `finish's answer does not match the required JSON schema: ${check.error}. Call finish again with \`answer\` matching exactly:\n${JSON.stringify(schema)}`,
    };
  return { finished: { text, citations, cut: false, schemaError: check.error } };
}
