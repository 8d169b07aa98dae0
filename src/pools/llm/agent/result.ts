import type { TaskContext, TaskResult } from '../../../engine/types.js';
import { keepText } from '../answer-files.js';
import type { LlmJobOptions } from '../types.js';
import type { Usage } from '../usage.js';
import { type CheckedCitation, citationsVerified, verifyCitations } from './citations.js';
import type { Finished } from './finish.js';
import type { AgentScope } from './scope.js';

/** What an investigation counted on its way, for its result and its live progress. */
export interface StepFigures {
  steps: number;
  toolCalls: Record<string, number>;
  /** Bytes of file content its tools looked at: what Claude did not have to read. */
  bytesRead: number;
  corrections: number;
  elided: number;
  notes: string[];
  endpoint?: string;
  /** Steps replayed from the transcript of an earlier run (a resumed task). */
  resumedAt?: number;
}

/** Citations shown in a result; more are counted (the whole list is in the transcript). */
const SHOWN_CITATIONS = 20;

export interface ResultParts {
  task: TaskContext;
  options: LlmJobOptions;
  figures: StepFigures;
  usage: Usage;
  scope: AgentScope;
  finished: Finished | undefined;
  failed: TaskResult | undefined;
  transcript: string;
  maxInlineChars: number;
  /** Names the answer's file (see AgentSpec.stem). */
  stem: string;
}

/**
 * An investigation's result: the answer (text or JSON) with every citation checked against the files
 * by the server (`verified` and why, `citations_verified: "k/n"`), and its figures (steps, calls per
 * tool, tokens, cut or not). The transcript is a file; its contents reach Claude only when asked.
 */
export async function investigationResult(parts: ResultParts): Promise<TaskResult> {
  const { task, figures, finished } = parts;
  const value: Record<string, unknown> = figuresOf(parts);
  const files: Record<string, string> = { transcript: parts.transcript };
  if (parts.failed !== undefined || finished === undefined) {
    const error = parts.failed?.error ?? { code: 'INTERNAL', message: 'The investigation ended without an answer.' };
    return { ok: false, error, value: { ...(parts.failed?.value ?? {}), ...value }, files };
  }
  const checked = await verifyCitations(finished.citations, parts.scope, task.signal);
  Object.assign(value, citationFields(checked));
  const kept = await keepText(task.outputDir, parts.stem, finished.text, 'answer', parts.maxInlineChars);
  if (kept.file !== undefined) files.output = kept.file;
  if (finished.json !== undefined) value.json = finished.json;
  else Object.assign(value, kept.inline);
  if (finished.schemaError !== undefined) {
    const error = {
      code: 'SCHEMA_INVALID',
      message: `The answer does not match json_schema, also after one corrective message: ${finished.schemaError}.`,
      hint: 'Simplify the schema or the task, or try a stronger model. The raw answer is in `text`.',
    };
    return { ok: false, error, value: { ...value, ...kept.inline }, files };
  }
  if (finished.text === '') {
    const error = {
      code: 'EMPTY_ANSWER',
      message: `The agent gave no answer in ${figures.steps} step(s)${finished.cut ? ', also when asked to finish after max_steps' : ''}.`,
      hint: 'Raise max_steps, narrow the task or its paths, or try a model that calls tools well.',
    };
    return { ok: false, error, value, files };
  }
  return { ok: true, value, files };
}

function figuresOf(parts: ResultParts): Record<string, unknown> {
  const { figures, usage, finished } = parts;
  const value: Record<string, unknown> = {
    model: parts.options.model,
    steps: figures.steps,
    tool_calls: figures.toolCalls,
    tokens_in: usage.promptTokens,
    tokens_out: usage.completionTokens,
    bytes_read: figures.bytesRead,
  };
  if (figures.endpoint !== undefined) value.endpoint = figures.endpoint;
  if (usage.estimated) value.tokens_estimated = true;
  if (finished?.cut) value.max_steps_reached = true;
  if (finished?.withoutTools) value.answered_without_tools = true;
  if (figures.corrections > 0) value.corrections = figures.corrections;
  if (figures.elided > 0) value.elided_results = figures.elided;
  if (figures.resumedAt !== undefined) value.resumed_after_step = figures.resumedAt;
  if (figures.notes.length > 0) value.notes = figures.notes;
  return value;
}

function citationFields(checked: readonly CheckedCitation[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    citations_verified: citationsVerified(checked),
    citations: checked.slice(0, SHOWN_CITATIONS).map((c) => ({
      path: c.path,
      start_line: c.start_line,
      end_line: c.end_line,
      verified: c.verified,
      reason: c.reason,
    })),
  };
  if (checked.length > SHOWN_CITATIONS) fields.citations_more = checked.length - SHOWN_CITATIONS;
  return fields;
}
