import { createHash } from 'node:crypto';

/** How much of one tool result goes back to the model. */
export interface Budget {
  bytes: number;
  lines: number;
}

export const DEFAULT_BUDGET: Budget = { bytes: 8000, lines: 200 };

/** `1,532`: line numbers and counts as people (and models) read them. */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** `2.1 KB`, `10.0 MB`, `512 B`. */
export function size(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} KB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

/** A short sha256 of a text: resume compares a recomputed result with the stored one by it. */
export function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** The one-line stub that replaces an old tool result when the context fills. */
export function elidedStub(summary: string, text: string): string {
  return `[${summary}: ${size(Buffer.byteLength(text))}, elided]`;
}

/**
 * `text` cut to the budget on a line boundary (a single overlong line is cut inside), with a note
 * saying how much was left out and `more`: how to ask for the rest.
 */
export function cutToBudget(text: string, budget: Budget, more: string): string {
  const lines = text.split('\n');
  const room = Math.max(200, budget.bytes - 160 - Buffer.byteLength(more));
  let used = 0;
  let kept = 0;
  for (const line of lines) {
    const bytes = Buffer.byteLength(line) + 1;
    if (kept >= budget.lines || used + bytes > room) break;
    used += bytes;
    kept++;
  }
  if (kept === lines.length) return text;
  let head = lines.slice(0, kept).join('\n');
  if (kept === 0) head = cutBytes(lines[0] ?? '', room);
  const leftLines = lines.length - kept;
  const leftBytes = Buffer.byteLength(text) - Buffer.byteLength(head);
  return `${head}\n[${count(leftLines)} more lines (${size(leftBytes)}) not shown: ${more}]`;
}

/** At most `max` bytes of `text`, not splitting a character, with `…` when cut. */
export function cutBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  const buffer = Buffer.from(text).subarray(0, Math.max(0, max - 3));
  // A cut inside a multi-byte character decodes to U+FFFD: drop it.
  return `${buffer.toString('utf8').replace(/\uFFFD$/, '')}…`;
}

/** A whole number argument: a number or a numeric string (models send both); undefined when absent. */
export function lineArgument(value: unknown, name: string): number | undefined | { refused: string } {
  if (value === undefined || value === null || value === '') return undefined;
  const n = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n))
    return { refused: `${name} must be a whole number (got ${short(value)}).` };
  if (n < 1) return { refused: `${name} must be 1 or more (lines are numbered from 1).` };
  if (n > 1e9) return { refused: `${name} ${short(value)} is too large.` };
  return n;
}

/** An optional string argument; a refusal when it is something else. */
export function stringArgument(value: unknown, name: string, max = 1000): string | undefined | { refused: string } {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') return { refused: `${name} must be a string (got ${short(value)}).` };
  if (value.length > max) return { refused: `${name} is too long (at most ${count(max)} characters).` };
  return value;
}

export function isRefusal(value: unknown): value is { refused: string } {
  return typeof value === 'object' && value !== null && 'refused' in value;
}

/** A value as a few characters of JSON, for a refusal. */
export function short(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeof value;
  } catch {
    text = typeof value;
  }
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
