import { callsOf, type RawCall } from './call-shapes.js';
import { jsonSpans, parseLoose } from './loose-json.js';
import { matchToolName } from './names.js';

/**
 * Tool calls written in an answer's text, as chat templates and untrained models write them:
 * `<tool_call>{…}</tool_call>` (Qwen, Hermes), `<function=name>{…}</function>` (Llama 3.1),
 * `[TOOL_CALLS][…]` (Mistral), a ``` / ```json fence, a bare JSON object anywhere in the text,
 * or a Python-style `read_file(path="a.ts")` (Llama 3.2, Gemma's tool_code).
 */

/** One place in the text that holds (or tried to hold) calls. */
export interface TextFinding {
  calls: RawCall[];
  /** Set when the place clearly meant to call a tool but could not be read: why. */
  problem?: string;
  /** The text was this call and nothing else (or a tag or fence said it is one). */
  deliberate: boolean;
  /** Parse repairs made. */
  repairs: string[];
}

const TAG = /<(tool_call|function_call|tool)>([\s\S]*?)(?:<\/\1>|$)/gi;
const FUNCTION_TAG = /<function=([\w.:-]{1,100})>([\s\S]*?)(?:<\/function>|$)/gi;
const FENCE = /```[ \t]*([\w-]*)[^\n]*\n([\s\S]*?)(?:```|$)/g;
const CALL_LANGS = new Set([
  '',
  'json',
  'jsonc',
  'json5',
  'tool_call',
  'tool_code',
  'python',
  'py',
  'js',
  'javascript',
]);
/** A name key whose value is a word: what a call looks like before it parses. */
const LOOKS_LIKE_CALL =
  /["']?(?:name|tool|tool_name|function)["']?\s*[:=]\s*["']?[\w.-]+|["'](?:arguments|parameters)["']\s*:/;
const MAX_SPANS = 32;

/** Every place in `text` (reasoning already removed) that holds a call or clearly tried to. */
export function findTextCalls(text: string, tools: readonly string[]): TextFinding[] {
  const tagged = [...text.matchAll(TAG)].map((m) => fromBody(m[2] ?? '', true, tools));
  const functions = [...text.matchAll(FUNCTION_TAG)].map((m) => fromFunctionTag(m[1] ?? '', m[2] ?? ''));
  if (tagged.length + functions.length > 0) return [...tagged, ...functions];
  const mistral = text.indexOf('[TOOL_CALLS]');
  if (mistral !== -1) return [fromBody(text.slice(mistral + '[TOOL_CALLS]'.length), true, tools)];
  const findings: TextFinding[] = [];
  const trimmed = text.trim();
  for (const m of trimmed.matchAll(FENCE)) {
    if (!CALL_LANGS.has((m[1] ?? '').toLowerCase())) continue;
    const whole = m.index === 0 && m[0].length >= trimmed.length - 3;
    findings.push(fromBody(m[2] ?? '', whole || LOOKS_LIKE_CALL.test(m[2] ?? ''), tools));
  }
  if (findings.some((f) => f.calls.length > 0 || f.problem !== undefined)) return findings;
  const outside = trimmed.replace(FENCE, (fence) => ' '.repeat(fence.length));
  return [...findings, ...bareFindings(outside, trimmed, tools)];
}

/** A tag's or fence's body: JSON (one value or several), else a Python-style call. */
function fromBody(body: string, deliberate: boolean, tools: readonly string[]): TextFinding {
  const spans = jsonSpans(body, MAX_SPANS);
  const finding: TextFinding = { calls: [], deliberate, repairs: [] };
  for (const span of spans) {
    if (span.end === -1) {
      finding.problem = 'the JSON is cut off (it never closes; was max_tokens reached?)';
      continue;
    }
    const parsed = parseLoose(body.slice(span.start, span.end));
    if (!parsed.ok) {
      finding.problem = `the JSON does not parse: ${parsed.problem}`;
      continue;
    }
    const calls = callsOf(parsed.value);
    if (calls === undefined) continue;
    finding.calls.push(...calls);
    finding.repairs.push(...parsed.repairs);
  }
  if (finding.calls.length > 0 || finding.problem !== undefined) return finding;
  const pythonic = pythonCalls(body, tools);
  if (pythonic !== undefined) return { ...pythonic, deliberate };
  if (deliberate && body.trim() !== '') finding.problem = 'no tool name and arguments found in it';
  return finding;
}

function fromFunctionTag(name: string, body: string): TextFinding {
  return { calls: [{ name, args: body.trim() }], deliberate: true, repairs: [] };
}

/**
 * JSON objects in plain text. A call mentioned in prose counts when its name is a tool; the text
 * being nothing but the JSON (or a Python-style call) makes it deliberate, so a failure there is
 * reported instead of the text being taken as the answer.
 */
function bareFindings(text: string, original: string, tools: readonly string[]): TextFinding[] {
  const findings: TextFinding[] = [];
  for (const span of jsonSpans(text, MAX_SPANS)) {
    const slice = span.end === -1 ? text.slice(span.start) : text.slice(span.start, span.end);
    const whole = span.start === 0 && (span.end === -1 || span.end === text.length);
    // Broken JSON in prose counts as a failed call only when it names a tool.
    const looks = LOOKS_LIKE_CALL.test(slice) && (whole || tools.some((tool) => slice.includes(tool)));
    if (span.end === -1) {
      if (looks)
        findings.push({
          calls: [],
          problem: 'the JSON is cut off (it never closes; was max_tokens reached?)',
          deliberate: true,
          repairs: [],
        });
      continue;
    }
    const parsed = parseLoose(slice);
    if (!parsed.ok) {
      if (looks)
        findings.push({
          calls: [],
          problem: `the JSON does not parse: ${parsed.problem}`,
          deliberate: true,
          repairs: [],
        });
      continue;
    }
    const calls = callsOf(parsed.value);
    if (calls !== undefined) findings.push({ calls, deliberate: whole, repairs: parsed.repairs });
    else if (whole) findings.push({ calls: [], deliberate: true, repairs: [], ...answerObject(parsed.value) });
  }
  if (findings.length > 0) return findings;
  const pythonic = pythonCalls(original, tools);
  return pythonic === undefined ? [] : [pythonic];
}

/** A bare `{"answer": …}`: finish's arguments written without the call (the loop decides if finish is offered). */
function answerObject(value: unknown): { calls?: RawCall[]; repairs?: string[] } {
  const isAnswer =
    typeof value === 'object' && value !== null && typeof (value as { answer?: unknown }).answer === 'string';
  return isAnswer
    ? { calls: [{ name: 'finish', args: value, weak: true }], repairs: ['an {"answer": …} object taken as finish'] }
    : {};
}

const PY_CALL = /^\s*\[?\s*([A-Za-z_][\w.-]{0,99})\s*\(/;

/**
 * `read_file(path="a.ts", start_line=3)`, `[grep(pattern='x'), outline(path="b.py")]` or
 * `finish({"answer": …})`: only when the text is nothing but such calls (prose mentioning
 * `read_file(path)` is not a call).
 */
function pythonCalls(text: string, tools: readonly string[]): TextFinding | undefined {
  const calls: RawCall[] = [];
  const repairs: string[] = [];
  let problem: string | undefined;
  let rest = text.trim();
  const bracketed = rest.startsWith('[');
  if (bracketed) rest = rest.slice(1);
  for (let n = 0; n < MAX_SPANS; n++) {
    const head = PY_CALL.exec(rest);
    if (!head?.[1] || matchToolName(head[1], tools) === undefined) return undefined;
    const open = head[0].length;
    const close = closingParen(rest, open);
    if (close === -1) return undefined;
    const inner = rest.slice(open, close).trim();
    const parsed = parseLoose(inner.startsWith('{') || inner === '' ? inner || '{}' : `{${inner}}`);
    if (parsed.ok) calls.push({ name: head[1], args: parsed.value });
    else problem ??= `the arguments of ${head[1]}(…) do not parse: ${parsed.problem}`;
    if (parsed.ok)
      repairs.push(...parsed.repairs.filter((r) => r !== '`=` read as `:`' && r !== 'unquoted keys quoted'));
    rest = rest.slice(close + 1).replace(/^\s*[,;]?\s*/, '');
    if (bracketed && rest.startsWith(']')) rest = rest.slice(1).trim();
    if (rest !== '') continue;
    // Only now, with nothing else in the text, is it clearly a call (broken or not).
    if (problem !== undefined) return { calls: [], problem, deliberate: true, repairs: [] };
    return { calls, deliberate: true, repairs: ['written as a Python-style call', ...repairs] };
  }
  return undefined;
}

/** Index of the `)` that closes the call whose arguments start at `from`, strings respected; -1 if none. */
function closingParen(text: string, from: number): number {
  let depth = 1;
  let quote: string | undefined;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return -1;
}
