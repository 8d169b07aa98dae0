/**
 * JSON as local models write it: strict first, then a forgiving parse that takes trailing commas,
 * single quotes, unquoted keys, `=` for `:`, missing commas between members, raw newlines inside
 * strings, comments and Python's True/False/None, saying which repairs it made. Never throws;
 * `__proto__` keys are dropped and nesting is bounded, so hostile text cannot reach a prototype
 * or the stack.
 */

export type LooseResult = { ok: true; value: unknown; repairs: string[] } | { ok: false; problem: string };

/** Deeper than this is no tool call's arguments. */
export const MAX_DEPTH = 32;

/** Parses `text` (one JSON value, surrounding whitespace allowed). */
export function parseLoose(text: string): LooseResult {
  try {
    const value: unknown = JSON.parse(text);
    const clean = sanitize(value, 0);
    return clean === TOO_DEEP
      ? { ok: false, problem: `it is nested deeper than ${MAX_DEPTH} levels` }
      : { ok: true, value: clean, repairs: [] };
  } catch {
    // Not strict JSON: the forgiving parser below says what it repaired, or precisely where it fails.
  }
  const parser = new LooseParser(text);
  try {
    parser.skip();
    const value = parser.value();
    parser.skip();
    if (parser.pos < text.length) parser.fail('text after the JSON value');
    return { ok: true, value, repairs: [...parser.repairs] };
  } catch (error) {
    if (error instanceof LooseError) return { ok: false, problem: error.message };
    return { ok: false, problem: 'it could not be parsed' };
  }
}

const TOO_DEEP = Symbol('too deep');

/** A copy without `__proto__` keys, or TOO_DEEP. Iterates no deeper than MAX_DEPTH. */
function sanitize(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_DEPTH) return TOO_DEEP;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const item of value) {
      const clean = sanitize(item, depth + 1);
      if (clean === TOO_DEEP) return TOO_DEEP;
      out.push(clean);
    }
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (key === '__proto__') continue;
    const clean = sanitize(item, depth + 1);
    if (clean === TOO_DEEP) return TOO_DEEP;
    out[key] = clean;
  }
  return out;
}

class LooseError extends Error {}

const PYTHON_WORDS: Record<string, unknown> = { True: true, False: false, None: null };
const JSON_WORDS: Record<string, unknown> = { true: true, false: false, null: null };
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };
const WORD = /[A-Za-z_$][\w$-]*/y;
const NUMBER = /[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?/y;

class LooseParser {
  pos = 0;
  readonly repairs = new Set<string>();
  private depth = 0;

  constructor(private readonly text: string) {}

  fail(what: string): never {
    const near = this.text.slice(Math.max(0, this.pos - 20), this.pos + 20).replace(/\s+/g, ' ');
    throw new LooseError(`${what} at character ${this.pos + 1} (near \`${near}\`)`);
  }

  /** Skips whitespace and comments. */
  skip(): void {
    for (;;) {
      while (this.pos < this.text.length && /\s/.test(this.text[this.pos] ?? '')) this.pos++;
      if (this.text.startsWith('//', this.pos) || this.text.startsWith('#', this.pos)) {
        const end = this.text.indexOf('\n', this.pos);
        this.pos = end === -1 ? this.text.length : end;
      } else if (this.text.startsWith('/*', this.pos)) {
        const end = this.text.indexOf('*/', this.pos + 2);
        this.pos = end === -1 ? this.text.length : end + 2;
      } else return;
      this.repairs.add('comments dropped');
    }
  }

  value(): unknown {
    const c = this.text[this.pos];
    if (c === undefined) this.fail('the JSON ends early');
    if (c === '{' || c === '[') {
      if (++this.depth > MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`);
      const value = c === '{' ? this.object() : this.array();
      this.depth--;
      return value;
    }
    if (c === '"' || c === "'") return this.string();
    NUMBER.lastIndex = this.pos;
    const number = NUMBER.exec(this.text);
    if (number) {
      this.pos += number[0].length;
      return Number(number[0]);
    }
    const word = this.word();
    if (word !== undefined && word in JSON_WORDS) return JSON_WORDS[word];
    if (word !== undefined && word in PYTHON_WORDS) {
      this.repairs.add('Python True/False/None read as JSON');
      return PYTHON_WORDS[word];
    }
    if (word !== undefined) this.pos -= word.length;
    return this.fail(word === undefined ? `unexpected \`${c}\`` : `unexpected word \`${word}\``);
  }

  private word(): string | undefined {
    WORD.lastIndex = this.pos;
    const word = WORD.exec(this.text)?.[0];
    if (word !== undefined) this.pos += word.length;
    return word;
  }

  private object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.pos++;
    for (let first = true; ; first = false) {
      this.skip();
      if (this.text[this.pos] === '}') {
        if (!first) this.repairs.add('trailing comma dropped');
        this.pos++;
        return out;
      }
      const key = this.key();
      this.skip();
      const sep = this.text[this.pos];
      if (sep === '=') this.repairs.add('`=` read as `:`');
      else if (sep !== ':') this.fail(`expected \`:\` after key "${key}"`);
      this.pos++;
      this.skip();
      const value = this.value();
      if (key !== '__proto__') out[key] = value;
      if (this.afterItem('}')) return out;
    }
  }

  private array(): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    for (let first = true; ; first = false) {
      this.skip();
      if (this.text[this.pos] === ']') {
        if (!first) this.repairs.add('trailing comma dropped');
        this.pos++;
        return out;
      }
      out.push(this.value());
      if (this.afterItem(']')) return out;
    }
  }

  /** After a member: `,` (go on), the closing bracket (done: true), or a missing comma. */
  private afterItem(close: '}' | ']'): boolean {
    this.skip();
    const c = this.text[this.pos];
    if (c === close) {
      this.pos++;
      return true;
    }
    if (c === ',') {
      this.pos++;
      return false;
    }
    // A new member right after the last one: the model forgot the comma.
    if (c !== undefined && /["'{[\w$-]/.test(c)) {
      this.repairs.add('missing comma added');
      return false;
    }
    return this.fail(
      c === undefined ? `the JSON is cut off (no closing \`${close}\`)` : `expected \`,\` or \`${close}\``,
    );
  }

  private key(): string {
    const c = this.text[this.pos];
    if (c === '"' || c === "'") return this.string();
    const word = this.word();
    if (word === undefined)
      return this.fail(c === undefined ? 'the JSON is cut off' : `unexpected \`${c}\` where a key should be`);
    this.repairs.add('unquoted keys quoted');
    return word;
  }

  private string(): string {
    const quote = this.text[this.pos];
    if (quote === "'") this.repairs.add('single quotes read as double');
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined) return this.fail('a string is not closed');
      this.pos++;
      if (c === quote) return out;
      if (c === '\n' || c === '\r') this.repairs.add('raw line breaks in a string kept');
      if (c !== '\\') {
        out += c;
        continue;
      }
      out += this.escape();
    }
  }

  private escape(): string {
    const e = this.text[this.pos++];
    if (e === undefined) return this.fail('a string is not closed');
    if (e === 'u') {
      const hex = this.text.slice(this.pos, this.pos + 4);
      if (/^[0-9a-fA-F]{4}$/.test(hex)) {
        this.pos += 4;
        return String.fromCharCode(parseInt(hex, 16));
      }
    }
    // `\"`, `\\`, `\/`, `\'` and any unknown escape stand for the character itself.
    return ESCAPES[e] ?? e;
  }
}

/**
 * Where each top-level JSON object or array starts and ends in `text`, scanned with strings
 * (either quote) respected. An opening left unclosed gives `end: -1` (a call cut off by
 * max_tokens). At most `limit` spans.
 */
export function jsonSpans(text: string, limit: number): Array<{ start: number; end: number }> {
  const spans: Array<{ start: number; end: number }> = [];
  let i = 0;
  while (spans.length < limit) {
    const start = text.slice(i).search(/[{[]/);
    if (start === -1) break;
    const from = i + start;
    const end = spanEnd(text, from);
    spans.push({ start: from, end });
    if (end === -1) break;
    i = end;
  }
  return spans;
}

/** Index after the bracket that closes the one at `start`, or -1. */
function spanEnd(text: string, start: number): number {
  let depth = 0;
  let quote: string | undefined;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"') quote = c;
    // An apostrophe opens a string only where a JSON token may start (`'key'`, `: 'v'`), not in `it's`.
    else if (c === "'" && /[\s{[,:=]/.test(text[i - 1] ?? ' ')) quote = c;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}
