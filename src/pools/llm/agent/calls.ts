import { splitReasoning } from '../reasoning.js';
import type { NativeToolCall } from '../types.js';
import { readArgs, type RawCall } from './call-shapes.js';
import { matchToolName } from './names.js';
import { exampleCall } from './protocol.js';
import { findTextCalls, type TextFinding } from './text-calls.js';

export { protocolPrompt, toolsRejected } from './protocol.js';

/**
 * What a model sent back, read as hostile input: native tool calls, calls written in the text (and
 * repaired), a call that could not be read (with the one message that tells the model why), or
 * plain text. Never throws.
 */

export interface AgentCall {
  id: string;
  name: string;
  args: Record<string, unknown>;
  /** How it was recovered, when it was not a clean native call (e.g. "written in the text"). */
  recovered?: string;
}

export type CallReading =
  | { kind: 'calls'; calls: AgentCall[] }
  | { kind: 'malformed'; problem: string; correction: string }
  /** No call at all: the answer, reasoning (`<think>…</think>`) removed. */
  | { kind: 'text'; text: string };

/** Text longer than this is not searched for calls (the work stays bounded): it is the answer. */
export const MAX_RECOVERY_CHARS = 200_000;
/** More calls than this in one answer: the rest are dropped. */
const MAX_CALLS = 16;

/** Reads the calls of one answer against the names of the offered tools. */
export function readCalls(
  answer: { content: string; toolCalls?: readonly NativeToolCall[] },
  tools: readonly string[],
): CallReading {
  try {
    if (answer.toolCalls !== undefined && answer.toolCalls.length > 0) return readNative(answer.toolCalls, tools);
    return readText(typeof answer.content === 'string' ? answer.content : '', tools);
  } catch {
    // Every path above is bounded and checked; should one still fail, the answer stays text.
    return { kind: 'text', text: typeof answer.content === 'string' ? answer.content.trim() : '' };
  }
}

function readNative(native: readonly NativeToolCall[], tools: readonly string[]): CallReading {
  const calls: AgentCall[] = [];
  for (const [index, call] of native.slice(0, MAX_CALLS).entries()) {
    const raw: RawCall = { name: typeof call.name === 'string' ? call.name : '', args: call.arguments };
    if (typeof call.id === 'string' && call.id !== '') raw.id = call.id;
    const read = resolve(raw, index, native.length, tools, []);
    if (typeof read === 'string') return malformed(read, tools);
    calls.push(read);
  }
  return { kind: 'calls', calls };
}

function readText(content: string, tools: readonly string[]): CallReading {
  if (content.length > MAX_RECOVERY_CHARS) return { kind: 'text', text: content.trim() };
  const text = splitReasoning(content).answer;
  const findings = findTextCalls(text, tools);
  const raws: Array<{ raw: RawCall; finding: TextFinding }> = [];
  for (const finding of findings) {
    if (finding.problem !== undefined && finding.deliberate) return malformed(finding.problem, tools);
    for (const raw of finding.calls) raws.push({ raw, finding });
  }
  const calls: AgentCall[] = [];
  for (const { raw, finding } of raws.slice(0, MAX_CALLS)) {
    const notes = ['written in the text', ...finding.repairs];
    // A `{"name": x}` in prose where x is no tool (a package.json quoted in the answer) is no call.
    const known = matchToolName(raw.name, tools) !== undefined;
    if (!known && (raw.weak === true || !finding.deliberate)) continue;
    const read = resolve(raw, calls.length, raws.length, tools, notes);
    if (typeof read === 'string') {
      if (finding.deliberate || known) return malformed(read, tools);
      continue;
    }
    calls.push(read);
  }
  return calls.length > 0 ? { kind: 'calls', calls } : { kind: 'text', text };
}

/** One call with its name matched and its arguments read, or what is wrong with it. */
function resolve(
  raw: RawCall,
  index: number,
  count: number,
  tools: readonly string[],
  notes: string[],
): AgentCall | string {
  const which = count > 1 ? `call ${index + 1} of ${count}` : 'the call';
  const name = raw.name.trim();
  if (name === '') return `${which} has no tool name`;
  const match = matchToolName(name, tools);
  if (match === undefined) return `${which} names a tool "${name.slice(0, 60)}" that does not exist`;
  const args = readArgs(raw.args);
  if (!args.ok) return `${which} (${match.tool}): ${args.problem}`;
  const how = [
    ...notes,
    ...(match.how !== undefined ? [match.how] : []),
    ...(args.how !== undefined ? [args.how] : []),
  ];
  const call: AgentCall = { id: raw.id ?? `call_${index + 1}`, name: match.tool, args: args.args };
  if (how.length > 0) call.recovered = [...new Set(how)].join('; ');
  return call;
}

/** The reading of a call that failed, with the one message that tells the model how to send it. */
function malformed(problem: string, tools: readonly string[]): CallReading {
  const list = tools.length > 0 ? tools.join(', ') : 'the tools offered';
  return {
    kind: 'malformed',
    problem,
    correction: `Your tool call could not be read: ${problem}. Call one of: ${list}, with JSON arguments, e.g. ${exampleCall(tools)}.`,
  };
}
