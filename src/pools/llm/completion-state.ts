import type { TaskContext, TaskResult } from '../../engine/types.js';
import { toTaskError } from '../../errors.js';
import type { ChatMessage, LlmJobOptions } from './types.js';
import type { Usage } from './usage.js';

/** One task's way through its attempts: what it has spent and tried so far. */
export interface Completion {
  task: TaskContext;
  /** Names the task's output files: its index, or a part of it (a split half, a reduce step). */
  stem: string;
  options: LlmJobOptions;
  /** The prompt as built; `conversation` is what the next request sends (a corrective retry adds to it). */
  messages: ChatMessage[];
  conversation: ChatMessage[];
  /** The task's own fields (id, file, chunk), in every value it returns. */
  base: Record<string, unknown>;
  usage: Usage;
  /** Endpoints that refused a connection during this task. */
  excluded: Set<string>;
  discovery: 'fresh' | 'cached';
  requests: number;
  retries: number;
  failovers: number;
  /** Kinds of failure already retried that are retried once only (retriedOnlyOnce). */
  retriedOnce: Set<string>;
  schemaRetried: boolean;
  /** When this task stops waiting for its endpoints to come back (set at its first outage, on endpoints.now's clock). */
  outageUntil?: number;
  lastEndpoint?: string;
  /** Where a request of this task went silent (stall.ts): it has had its one stall retry. */
  stalledOn?: string;
}

/** A task's first attempt, nothing spent yet. */
export function startCompletion(
  task: TaskContext,
  options: LlmJobOptions,
  messages: ChatMessage[],
  base: Record<string, unknown>,
  stem: string,
): Completion {
  return {
    task,
    stem,
    options,
    messages,
    conversation: messages,
    base,
    usage: { promptTokens: 0, completionTokens: 0, estimated: false },
    excluded: new Set(),
    discovery: 'cached',
    requests: 0,
    retries: 0,
    failovers: 0,
    retriedOnce: new Set(),
    schemaRetried: false,
  };
}

/**
 * What one attempt came to: an answer (or a final failure) ends the task; `again` and `failover`
 * go on at once (a fresh model list, a corrective prompt, another endpoint); `away` waits (bounded)
 * for one of the endpoints to take connections again; `retry` goes on after the backoff if the
 * policy allows, else fails with `extra` in its value.
 */
export type Outcome =
  | { kind: 'done'; result: TaskResult }
  | { kind: 'again' }
  | { kind: 'failover' }
  | { kind: 'away'; endpoints: string[]; error: unknown }
  | { kind: 'retry'; error: unknown; extra?: Record<string, unknown> }
  | { kind: 'fail'; error: unknown; extra?: Record<string, unknown> };

/** A failed task's result: its fields, the model, what it spent (tokens, requests) and where. */
export function failure(run: Completion, error: unknown, extra: Record<string, unknown> = {}): TaskResult {
  const value: Record<string, unknown> = { ...run.base, model: run.options.model, ...extra, requests: run.requests };
  if (run.lastEndpoint !== undefined) value.endpoint ??= run.lastEndpoint;
  // Tokens spent on attempts that failed still count in the job's totals.
  if (run.usage.promptTokens + run.usage.completionTokens > 0) {
    value.tokens_in = run.usage.promptTokens;
    value.tokens_out = run.usage.completionTokens;
  }
  return { ok: false, error: toTaskError(error), value };
}
