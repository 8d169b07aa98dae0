import { randomInt } from 'node:crypto';
import type { TaskContext } from '../../engine/types.js';
import { decodeUtf8 } from './output.js';

/** The warm protocol's lines (described in warm.ts and workers/README.md): requests made, replies checked. */

/** Characters of a bad reply quoted in the error. */
const PREVIEW_CHARS = 200;
/**
 * Request ids are drawn from 1 up to this: a reply written before its request was read cannot
 * guess it. Integers, as the protocol always had (a worker may parse the id as a 32-bit int).
 */
const ID_LIMIT = 2 ** 31 - 1;
/** What to do about a worker that closed fd 3 or fd 4 while it kept running. */
export const PIPE_HINT =
  'A warm worker keeps fd 3 (requests) and fd 4 (replies) open until EOF on fd 3, then exits. Check that it, or a library it calls, does not close them (closing every fd above 2, say) and that a child it starts does not take them; meanwhile run_script_batch with warm: false runs it cold.';

/** One task's input, as the pool checked it. */
export interface WarmTaskInput {
  args?: string[] | undefined;
  stdin?: string | undefined;
  json?: unknown;
}

/** A reply line as parsed: a cold worker's exit code, and its result (JSON) or output (text). */
export interface WarmReply {
  exit_code: number;
  result?: unknown;
  output?: string;
}

/** How one request to a process ended. */
export type Outcome =
  | { kind: 'reply'; reply: WarmReply }
  | { kind: 'protocol'; problem: string; hint?: string }
  /** The process ended without replying. */
  | { kind: 'exited' }
  | { kind: 'stopped'; reason: 'timeout' | 'cancel' };

/** How serving one request ended: as an Outcome, or without the request ever read (it may go to another process). */
export type ServeOutcome = Outcome | { kind: 'unsent'; problem: string; hint: string };

/** One request line: a cold task's args, input and per-task MONITOR_* variables. */
export interface WarmRequest {
  /** Not sent as given: each request goes out with an id of its own (requestId, WarmProcess.serve). */
  id?: number;
  args: string[];
  env: Record<string, string>;
  stdin?: string;
  json?: unknown;
}

/** The request line's content for one task: a cold task's args, input and per-task MONITOR_* variables. */
export function requestFor(task: TaskContext, input: WarmTaskInput): WarmRequest {
  const message: WarmRequest = {
    args: input.args ?? [],
    env: {
      MONITOR_TASK_INDEX: String(task.index),
      MONITOR_ATTEMPT: String(task.attempt),
      MONITOR_STDIN_FORMAT: input.stdin !== undefined ? 'text' : input.json !== undefined ? 'json' : 'none',
    },
  };
  if (input.stdin !== undefined) message.stdin = input.stdin;
  else if (input.json !== undefined) message.json = input.json;
  return message;
}

/** A fresh request id: random, and never the one sent before (`previous`), so a stale or early reply cannot match. */
export function requestId(previous: number | undefined): number {
  for (;;) {
    const id = randomInt(1, ID_LIMIT);
    if (id !== previous) return id;
  }
}

/** `line` quoted for an error message: its start, escaped (JSON string rules), whatever its bytes. */
export function preview(line: Buffer | string): string {
  const text = typeof line === 'string' ? line : decodeUtf8(line.subarray(0, PREVIEW_CHARS * 4)).text;
  const shown = JSON.stringify(text.slice(0, PREVIEW_CHARS));
  return text.length > PREVIEW_CHARS ? `${shown}…` : shown;
}

/** What is wrong with a reply line to request `id`, or the reply. */
export function parseReply(line: Buffer, id: number): { reply: WarmReply } | { problem: string } {
  const { text, lossy } = decodeUtf8(line);
  if (lossy) return { problem: `sent a reply that is not valid UTF-8: ${preview(text)}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: `sent a reply that is not JSON: ${preview(text)}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    return { problem: `sent a reply that is not a JSON object: ${preview(text)}` };
  const reply = parsed as Record<string, unknown>;
  if (reply.id !== id)
    return {
      problem: `replied with id ${JSON.stringify(reply.id) ?? 'missing'} to request ${id} (a reply carries the id read from the request it answers): ${preview(text)}`,
    };
  const exitCode = reply.exit_code;
  if (typeof exitCode !== 'number' || !Number.isInteger(exitCode))
    return { problem: `sent a reply without an integer exit_code: ${preview(text)}` };
  if (reply.output !== undefined && typeof reply.output !== 'string')
    return { problem: `sent a reply whose output is not a string: ${preview(text)}` };
  if (reply.output !== undefined && reply.result !== undefined)
    return { problem: `sent a reply with both result and output: ${preview(text)}` };
  const out: WarmReply = { exit_code: exitCode };
  if (reply.result !== undefined) out.result = reply.result;
  if (typeof reply.output === 'string') out.output = reply.output;
  return { reply: out };
}
