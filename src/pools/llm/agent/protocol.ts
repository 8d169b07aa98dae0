import type { ToolSpec } from '../types.js';

/**
 * For servers that refuse `tools`: recognising the refusal, and the same tools described in the
 * prompt so the model writes its calls as JSON in the answer (which readCalls reads back).
 */

/**
 * What servers answer when they will not take `tools` (texts as they send them):
 * llama-server without --jinja ("tools param requires --jinja flag"; older builds "Unsupported
 * param: tools"), llama-server builds that cannot stream tool calls ("Cannot use tools with
 * stream"), vLLM without --enable-auto-tool-choice ("\"auto\" tool choice requires
 * --enable-auto-tool-choice and --tool-call-parser to be set"; older ones reject the field itself,
 * "extra_forbidden … 'tools' … Extra inputs are not permitted"), Ollama with a model whose template
 * has no tools ("<model> does not support tools"), and servers that refuse the `tool` role.
 * LM Studio takes `tools` for every model (a model without native support gets its default
 * tool-use prompt), so it has no text of its own here.
 */
const REFUSALS: readonly RegExp[] = [
  /tools? param(eter)? requires --jinja/i,
  /unsupported param(eter)?:?\s*['"`]?tools?\b/i,
  /cannot use tools with stream/i,
  /tool choice requires --enable-auto-tool-choice/i,
  /--enable-auto-tool-choice/i,
  /does not support (tools|tool use|tool calling|function calling)/i,
  /(tools?|function calling|tool calling|tool use) (is|are) not (yet )?supported/i,
  /tool_choice\b.*\bnot (yet )?supported/i,
  /unexpected role ['"`]?tool\b/i,
];
/** A schema validator's complaint about the `tools` field (pydantic, FastAPI). */
const FIELD_REFUSED =
  /extra[ _](inputs are not permitted|forbidden)|unrecognized (request )?(argument|field)|unknown (field|parameter)/i;

/** Whether `error` is a server refusing the `tools` of a request (then: protocolPrompt instead). */
export function toolsRejected(error: unknown): boolean {
  const text = messageOf(error, 0).slice(0, 20_000);
  if (text === '') return false;
  if (REFUSALS.some((pattern) => pattern.test(text))) return true;
  return FIELD_REFUSED.test(text) && /['"`]tools?['"`]|tool_choice/.test(text);
}

/** The error's message and its causes' (servers' texts are wrapped in the client's errors). */
function messageOf(error: unknown, depth: number): string {
  if (depth > 3 || error === null || error === undefined) return '';
  if (typeof error === 'string') return error;
  if (typeof error !== 'object') return '';
  const { message, cause } = error as { message?: unknown; cause?: unknown };
  const own = typeof message === 'string' ? message : '';
  const inner = messageOf(cause, depth + 1);
  return inner === '' ? own : `${own}\n${inner}`;
}

/** Parameters as a signature: `path: string, start_line?: integer`. */
function signature(parameters: Record<string, unknown>): string {
  const properties = parameters.properties;
  if (typeof properties !== 'object' || properties === null) return '';
  const required = new Set(Array.isArray(parameters.required) ? parameters.required : []);
  return Object.entries(properties as Record<string, unknown>)
    .map(([name, schema]) => `${name}${required.has(name) ? '' : '?'}: ${typeName(schema, 0)}`)
    .join(', ');
}

function typeName(schema: unknown, depth: number): string {
  if (typeof schema !== 'object' || schema === null || depth > 2) return 'any';
  const s = schema as { type?: unknown; items?: unknown; properties?: unknown; required?: unknown; enum?: unknown };
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (s.type === 'array') return `array of ${typeName(s.items, depth + 1)}`;
  if (s.type === 'object' && typeof s.properties === 'object' && s.properties !== null)
    return `{${signature(s as Record<string, unknown>)}}`;
  return typeof s.type === 'string' ? s.type : Array.isArray(s.type) ? s.type.join(' | ') : 'any';
}

/** One example call, from the tools at hand. */
export function exampleCall(names: readonly string[]): string {
  if (names.includes('read_file'))
    return '{"name": "read_file", "arguments": {"path": "src/index.ts", "start_line": 1, "end_line": 80}}';
  return `{"name": "${names[0] ?? 'tool'}", "arguments": {}}`;
}

/**
 * The tools written into the system prompt, for a server that refused `tools`: how to write one
 * call as JSON in the answer, and each tool's signature and description.
 */
export function protocolPrompt(tools: readonly ToolSpec[]): string {
  const names = tools.map((t) => t.function.name);
  const lines = tools.map((t) => {
    const description = t.function.description.trim().replace(/\s+/g, ' ');
    return `- ${t.function.name}(${signature(t.function.parameters)}): ${description}`;
  });
  return [
    'You can use tools. To call one, answer with nothing but one JSON object of this form, and no other text:',
    '{"name": "<tool name>", "arguments": {<arguments as JSON>}}',
    `for example ${exampleCall(names)}`,
    `Call one tool per answer. Its result comes back in the next message${names.includes('finish') ? '; call finish when you have the answer' : ''}. Use double quotes, no comments, no trailing commas.`,
    '',
    'Tools (name(arguments): what it does; `?` marks an optional argument):',
    ...lines,
  ].join('\n');
}
