import type { TaskContext } from '../../engine/types.js';
import { decodeUtf8 } from './output.js';

/** The warm protocol's lines (described in warm.ts and workers/README.md): requests made, replies checked. */

/** Characters of a bad reply quoted in the error. */
const PREVIEW_CHARS = 200;

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
  | { kind: 'protocol'; problem: string }
  /** The process ended without replying. */
  | { kind: 'exited' }
  | { kind: 'stopped'; reason: 'timeout' | 'cancel' };

/** One request line: a cold task's args, input and per-task MONITOR_* variables. */
export interface WarmRequest {
  id: number;
  args: string[];
  env: Record<string, string>;
  stdin?: string;
  json?: unknown;
}

/** The request line's content for one task: a cold task's args, input and per-task MONITOR_* variables. */
export function requestFor(task: TaskContext, input: WarmTaskInput): WarmRequest {
  const message: WarmRequest = {
    id: task.index,
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
    return { problem: `replied with id ${JSON.stringify(reply.id) ?? 'missing'} to request ${id}: ${preview(text)}` };
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
