import { parseLoose } from './loose-json.js';

/**
 * The shapes a tool call takes once parsed, as models write them: OpenAI's
 * `{"function": {"name", "arguments"}}`, `{"name", "arguments"|"parameters"|"args"|"input"}`,
 * `{"tool"|"tool_name"|"function"|"action": "name", ...arguments}`, wrappers `{"tool_calls": [...]}`,
 * and lists of any of these.
 */

/** A call found, before its name is matched and its arguments read. */
export interface RawCall {
  name: string;
  /** As found: an object, a string holding JSON, or absent. */
  args: unknown;
  id?: string;
  /** `{"name": x, ...}` without an arguments key: a call only when x is a tool (package.json has a name too). */
  weak?: boolean;
}

const ARG_KEYS = ['arguments', 'parameters', 'args', 'input', 'action_input', 'tool_input', 'params'];
const NAME_KEYS = ['tool', 'tool_name', 'function', 'action', 'command', 'function_name'];
const WRAPPER_KEYS = ['tool_calls', 'calls', 'function_calls', 'tools', 'actions'];
/** Keys that say what the call is, not what it is given. */
const META_KEYS = new Set(['id', 'type', 'index', 'name', ...NAME_KEYS]);
const MAX_CALLS = 64;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function argsOf(object: Record<string, unknown>): { args: unknown; explicit: boolean } {
  for (const key of ARG_KEYS) if (key in object) return { args: object[key], explicit: true };
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) if (!META_KEYS.has(key)) rest[key] = value;
  return { args: rest, explicit: false };
}

function withId(call: RawCall, object: Record<string, unknown>): RawCall {
  if (typeof object.id === 'string' && object.id !== '') call.id = object.id;
  return call;
}

/** The calls a parsed value holds, or undefined when it is not shaped like a call at all. */
export function callsOf(value: unknown, depth = 0): RawCall[] | undefined {
  if (depth > 3) return undefined;
  if (Array.isArray(value)) {
    const calls = value.slice(0, MAX_CALLS).flatMap((item) => callsOf(item, depth + 1) ?? []);
    return calls.length > 0 ? calls : undefined;
  }
  if (!isRecord(value)) return undefined;
  for (const key of WRAPPER_KEYS) if (Array.isArray(value[key])) return callsOf(value[key], depth + 1);
  const fn = value.function;
  if (isRecord(fn) && typeof fn.name === 'string') {
    return [withId({ name: fn.name, args: argsOf(fn).args }, value)];
  }
  if (typeof value.name === 'string') {
    const { args, explicit } = argsOf(value);
    const call = withId({ name: value.name, args }, value);
    if (!explicit) call.weak = true;
    return [call];
  }
  for (const key of NAME_KEYS) {
    const name = value[key];
    if (typeof name === 'string' && name !== '') return [withId({ name, args: argsOf(value).args }, value)];
  }
  return undefined;
}

export type ArgsReading = { ok: true; args: Record<string, unknown>; how?: string } | { ok: false; problem: string };

/** Bigger arguments than this are not read (a tool call's arguments are a few lines). */
export const MAX_ARGUMENT_CHARS = 200_000;

/** Arguments as an object: a JSON string (even one holding JSON again), an object, or nothing (= {}). */
export function readArgs(raw: unknown): ArgsReading {
  const notes: string[] = [];
  let value = raw;
  for (let level = 0; typeof value === 'string' && level < 3; level++) {
    const text = value.trim();
    if (text === '') return { ok: true, args: {}, ...how(notes) };
    if (text.length > MAX_ARGUMENT_CHARS)
      return { ok: false, problem: `its arguments are longer than ${MAX_ARGUMENT_CHARS} characters` };
    const parsed = parseLoose(text);
    if (!parsed.ok) return { ok: false, problem: `its arguments are not valid JSON: ${parsed.problem}` };
    if (level > 0) notes.push('arguments were JSON inside a string');
    notes.push(...parsed.repairs);
    value = parsed.value;
  }
  if (value === undefined || value === null) return { ok: true, args: {}, ...how(notes) };
  if (!isRecord(value)) {
    const kind = Array.isArray(value) ? 'a list' : typeof value === 'string' ? 'text' : `a ${typeof value}`;
    return { ok: false, problem: `its arguments are ${kind}, not a JSON object` };
  }
  return { ok: true, args: value, ...how(notes) };
}

function how(notes: string[]): { how?: string } {
  return notes.length > 0 ? { how: [...new Set(notes)].join(', ') } : {};
}
