import * as z from 'zod';
import { MonitorError } from '../errors.js';

/**
 * A tool's arguments checked against its schema, strictly: an unknown argument is an error (a typo
 * such as `timeout` for `timeout_seconds` must not run under a default), and every error reads
 * `INVALID_INPUT: …` with a next step, as the model receives it.
 */
export function parseArguments<Shape extends z.ZodRawShape>(
  toolName: string,
  shape: Shape,
  raw: unknown,
): z.infer<z.ZodObject<Shape>> {
  checkDepth(toolName, raw);
  const parsed = z.strictObject(shape).safeParse(raw ?? {});
  if (parsed.success) return parsed.data;
  const known = Object.keys(shape);
  const problems = parsed.error.issues.map((issue) => describeIssue(issue, known));
  const fields = [
    ...new Set(
      parsed.error.issues
        .map((issue) => issue.path[0])
        .filter((key): key is string => typeof key === 'string' && key in shape),
    ),
  ];
  const help = fields
    .map((key) => {
      const field = shape[key];
      const description = field === undefined ? undefined : z.globalRegistry.get(field)?.description;
      return description
        ? `${key}: ${description.length > 240 ? `${description.slice(0, 240)}…` : description}`
        : undefined;
    })
    .filter((line) => line !== undefined);
  throw new MonitorError('INVALID_INPUT', `Invalid arguments for ${toolName}: ${problems.join('; ')}.`, {
    hint: [
      `Fix ${problems.length === 1 ? 'it' : 'them'} and call ${toolName} again (nothing was started).`,
      ...help,
      `Its arguments: ${known.join(', ')}.`,
    ].join(' '),
  });
}

/** Deepest nesting of arguments: a worker's JSON input rarely needs 10; validation and storage recurse. */
export const MAX_ARGUMENT_DEPTH = 64;

/**
 * Refuses arguments nested deeper than MAX_ARGUMENT_DEPTH, before anything recursive (schema
 * checks, JSON of the stored job) meets them: 100,000 levels overflowed the stack mid-submit.
 * Iterative, and it stops at the first place too deep.
 */
function checkDepth(toolName: string, raw: unknown): void {
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value: raw, depth: 0, path: '' }];
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop() as { value: unknown; depth: number; path: string };
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_ARGUMENT_DEPTH) {
      throw new MonitorError(
        'INVALID_INPUT',
        `Invalid arguments for ${toolName}: ${path.slice(0, 120)}${path.length > 120 ? '…' : ''} nests deeper than ${MAX_ARGUMENT_DEPTH} levels.`,
        {
          hint: `Flatten that value (at most ${MAX_ARGUMENT_DEPTH} levels of objects and arrays), or put it in a file the worker reads; nothing was started.`,
        },
      );
    }
    for (const [key, child] of Object.entries(value)) {
      if (child !== null && typeof child === 'object')
        stack.push({
          value: child,
          depth: depth + 1,
          path: Array.isArray(value) ? `${path}[${key}]` : path === '' ? key : `${path}.${key}`,
        });
    }
  }
}

/**
 * True when JSON `text` opens more than `max` objects and arrays at once. A scan of the text, not a
 * parse: JSON.parse and everything after it recurse, and 50,000 levels overflow the stack. Brackets
 * inside strings (escaped quotes included) are text.
 */
export function nestsDeeper(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

function describeIssue(issue: z.core.$ZodIssue, known: readonly string[]): string {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((key) => {
        const near = closest(key, known);
        return `unknown argument "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
      })
      .join('; ');
  }
  const where = pathText(issue.path);
  if (issue.code === 'invalid_type' && issue.path.length > 0 && /received undefined/.test(issue.message))
    return `${where} is required`;
  return where ? `${where}: ${issue.message}` : issue.message;
}

/** `inputs[0].args` from `["inputs", 0, "args"]`. */
function pathText(path: readonly PropertyKey[]): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

/** The known name a mistyped one most likely meant: a prefix of it, or a few edits away. */
export function closest(word: string, names: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const prefixed = names.find((name) => name.startsWith(lower) || lower.startsWith(name));
  if (prefixed) return prefixed;
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(lower, name);
    if (distance <= Math.max(2, Math.floor(name.length / 4)) && (!best || distance < best.distance))
      best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The JSON schema clients list for a tool (the model reads it on every request): strict at the top
 * (unknown arguments refused), without what costs tokens and says nothing — `$schema`, the ±2^53
 * bounds of every integer, `propertyNames: {type: "string"}` of maps, an empty `{}` of "any value".
 * Nested objects are strict too; the argument check says so when one gets an unknown key.
 */
export function inputJsonSchema(shape: z.ZodRawShape): Record<string, unknown> {
  const schema = z.toJSONSchema(z.strictObject(shape), { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
  delete schema.$schema;
  const lean = (node: unknown, depth: number): unknown => {
    if (Array.isArray(node)) return node.map((n) => lean(n, depth + 1));
    if (node === null || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(node)) {
      if (
        (key === 'maximum' && value === Number.MAX_SAFE_INTEGER) ||
        (key === 'minimum' && value === Number.MIN_SAFE_INTEGER)
      )
        continue;
      if (key === 'propertyNames' && JSON.stringify(value) === '{"type":"string"}') continue;
      if (key === 'additionalProperties' && (depth > 0 ? value === false : false)) continue;
      if (key === 'additionalProperties' && JSON.stringify(value) === '{}') continue;
      out[key] = lean(value, depth + 1);
    }
    return out;
  };
  return lean(schema, 0) as Record<string, unknown>;
}

/**
 * The file forms of the tools' inline lists (arguments named `*_file`), as a phrase for people:
 * "run_script_batch's inputs_file, lmstudio_complete's prompts_file or items_file". Read from the
 * schemas, so a new kind's tool is named without anyone listing it.
 */
export function fileArgumentsPhrase(tools: ReadonlyArray<{ name: string; inputSchema: z.ZodRawShape }>): string {
  return tools
    .map((tool) => ({ tool: tool.name, files: Object.keys(tool.inputSchema).filter((name) => name.endsWith('_file')) }))
    .filter(({ files }) => files.length > 0)
    .map(({ tool, files }) => `${tool}'s ${files.join(' or ')}`)
    .join(', ');
}
