import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { PathRules } from '../paths.js';
import { closest } from '../tools/arguments.js';

/** What a prompt may know of the server: where relative paths resolve, as the tools resolve them. */
export interface PromptContext {
  /** The allowed folders; relative paths resolve against the first. */
  roots: readonly string[];
  rules: PathRules;
}

export interface PromptArgumentSpec {
  name: string;
  description: string;
  required?: boolean;
  /** Longest value, in characters: arguments are user input and end up in the text. */
  max: number;
  /** Free text may span lines; a path or a command may not. */
  multiline?: boolean;
  /** A value to show in an error, e.g. `src/auth`. */
  example: string;
}

/** The optional model every prompt takes. */
export const MODEL_ARGUMENT: PromptArgumentSpec = {
  name: 'model',
  description: 'A model from lmstudio_models (default: the loaded one)',
  max: 200,
  example: 'qwen3',
};

/** A path argument that is a glob (lmstudio_complete's `files` reads these characters as one). */
export function isGlob(path: string): boolean {
  return /[*?[{]/.test(path);
}

/** One slash-command workflow: its arguments and the text that tells Claude which calls to make. */
export interface PromptDefinition {
  name: string;
  title: string;
  description: string;
  arguments: readonly PromptArgumentSpec[];
  /** The text for Claude, from checked arguments (an optional one left out or empty is absent). */
  render(args: Readonly<Record<string, string>>, ctx: PromptContext): Promise<string>;
}

/** The error prompts/get answers with: what was wrong, then what to do. */
export function invalidParams(message: string, next: string): McpError {
  const error = new McpError(ErrorCode.InvalidParams, '');
  // McpError prefixes "MCP error -32602: ", and the client prefixes it again to what the wire carries: once is enough.
  error.message = `${/[.!?]$/.test(message) ? message : `${message}.`} Next: ${next}`;
  return error;
}

/** How the prompt is called with example values, for error messages. */
export function usage(prompt: PromptDefinition): string {
  const shown = prompt.arguments.filter((a) => a.required).map((a) => `${a.name}=${JSON.stringify(a.example)}`);
  return `prompts/get "${prompt.name}" with ${shown.join(', ') || 'no arguments'} (in Claude Code: /mcp__monitor__${prompt.name} ${prompt.arguments
    .filter((a) => a.required)
    .map((a) => (/\s/.test(a.example) ? JSON.stringify(a.example) : a.example))
    .join(' ')})`;
}

// C0 controls but tab and line breaks, and DEL: nothing a user types means them.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** Checks the arguments a client sent against the prompt's: known names, required ones given, within bounds. */
export function checkArguments(
  prompt: PromptDefinition,
  raw: Readonly<Record<string, unknown>> | undefined,
): Record<string, string> {
  const names = prompt.arguments.map((a) => a.name);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw ?? {})) {
    const spec = prompt.arguments.find((a) => a.name === name);
    if (!spec) {
      const near = closest(name, names);
      throw invalidParams(
        `The prompt "${prompt.name}" has no argument "${name}"${near ? ` (did you mean "${near}"?)` : ''}.`,
        `Its arguments: ${names.join(', ')}.`,
      );
    }
    if (typeof value !== 'string')
      throw invalidParams(`The argument "${name}" must be a string.`, `Give it as text, e.g. ${spec.example}.`);
    const trimmed = value.trim();
    if (trimmed === '') continue;
    if (trimmed.length > spec.max)
      throw invalidParams(
        `The argument "${name}" is ${trimmed.length} characters long, over ${spec.max}.`,
        `Shorten it (${spec.description}).`,
      );
    if (CONTROL.test(trimmed) || (!spec.multiline && /[\r\n]/.test(trimmed)))
      throw invalidParams(
        `The argument "${name}" contains ${spec.multiline ? 'a control character' : 'a line break or control character'}.`,
        `Give it on one line of plain text, e.g. ${spec.example}.`,
      );
    out[name] = trimmed;
  }
  const missing = prompt.arguments.filter((a) => a.required && out[a.name] === undefined);
  if (missing.length > 0)
    throw invalidParams(
      `The prompt "${prompt.name}" needs ${missing.map((a) => `"${a.name}" (${a.description})`).join(' and ')}.`,
      `Call ${usage(prompt)}.`,
    );
  return out;
}
