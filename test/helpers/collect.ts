import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { textOf } from './client.js';

/** Anything that calls a tool: the in-memory client, a server spawned over stdio, the bench's server. */
export interface ToolCaller {
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
}

/** One result as collect_results shows it. */
export interface CollectedResult {
  index: number;
  /** What the task worked on (its label): args, prompt id, file or URL. */
  id?: string;
  state: string;
  attempt?: number;
  duration_ms?: number;
  value?: Record<string, unknown>;
  error?: { code: string; message: string; hint?: string };
  files?: Record<string, string>;
}

/** A job's view on a collect_results page (the kind's own totals beside these). */
export interface CollectedJob {
  job_id: string;
  state: string;
  counts: Record<string, number>;
  [field: string]: unknown;
}

/** A collect_results reply's structuredContent (the fields the tests read). */
export interface CollectPage<R = CollectedResult> {
  jobs: CollectedJob[];
  done: boolean;
  results: R[];
  remaining: number;
  next_cursor?: string;
  next: string;
  /** For a later stage: a short index of the job it runs on. */
  upstream?: Array<{
    job_id: string;
    state: string;
    counts: Record<string, number>;
    failed?: Array<{ id: string; code: string }>;
    summary: string;
  }>;
}

export interface CollectOptions<R> {
  /** wait_seconds of each call (20 unless told). */
  waitSeconds?: number;
  /** budget_tokens of each call; unless told, the server's default, as a model pages. */
  budgetTokens?: number;
  allAttempts?: boolean;
  /**
   * `done` (the default): page on and wait until the jobs are done and every result is shown.
   * `ready`: stop once what is ready now is shown (remaining 0), running or not: a snapshot.
   */
  until?: 'done' | 'ready';
  /** The walk throws when it is not over after this long (120 s unless told). */
  timeoutMs?: number;
  /** Sees each reply as it comes (to assert on every page, or to measure it). */
  onReply?: (reply: CallToolResult, page: CollectPage<R>) => void;
}

export interface Collected<R> {
  /** Every result the walk showed, sorted by task index (a stable sort: a task's attempts stay in order). */
  results: R[];
  /** The first job's view on the last page. */
  job: CollectedJob;
  /** The last page (its jobs, upstream index and next step). */
  last: CollectPage<R>;
  /** The last reply as the client got it. */
  lastReply: CallToolResult;
  /** How many collect_results calls the walk made. */
  pages: number;
}

/**
 * Every result of a job (or of several, collected together) through collect_results as a client
 * pages: it passes each next_cursor back until nothing remains (and, unless `until: 'ready'`, the
 * jobs are done). Throws on an error reply, with its text.
 */
export async function collectAll<R extends { index: number } = CollectedResult>(
  caller: ToolCaller,
  jobIds: string | readonly string[],
  options: CollectOptions<R> = {},
): Promise<Collected<R>> {
  const ids = typeof jobIds === 'string' ? [jobIds] : [...jobIds];
  const timeoutMs = options.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  const results: R[] = [];
  let cursor: string | undefined;
  for (let pages = 1; ; pages++) {
    const args: Record<string, unknown> = {
      job_ids: ids,
      wait_seconds: options.waitSeconds ?? 20,
    };
    if (options.budgetTokens !== undefined) args.budget_tokens = options.budgetTokens;
    if (cursor !== undefined) args.cursor = cursor;
    if (options.allAttempts) args.all_attempts = true;
    const reply = await caller.call('collect_results', args);
    if (reply.isError) throw new Error(`collect_results failed: ${textOf(reply)}`);
    const page = reply.structuredContent as unknown as CollectPage<R>;
    options.onReply?.(reply, page);
    results.push(...page.results);
    cursor = page.next_cursor;
    // No cursor means the jobs are done and this page showed the rest (see collect_results).
    const over = options.until === 'ready' ? page.remaining === 0 : cursor === undefined;
    if (over)
      return {
        results: results.sort(byIndex),
        job: page.jobs[0] ?? { job_id: '?', state: '?', counts: {} },
        last: page,
        lastReply: reply,
        pages,
      };
    if (Date.now() > deadline) throw new Error(`collect_results over ${ids.join(', ')} not over after ${timeoutMs} ms`);
  }
}

const byIndex = (a: { index: number }, b: { index: number }): number => a.index - b.index;
