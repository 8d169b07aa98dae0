import { count } from './format.js';
import { readLines } from './lines.js';
import type { AgentScope } from './scope.js';

export interface Citation {
  path: string;
  start_line: number;
  end_line: number;
  quote?: string;
}

export interface CheckedCitation extends Citation {
  verified: boolean;
  reason: string;
}

const MOST_CITATIONS = 50;
/** Lines of one citation compared with its quote: a citation of a whole big file is not a claim about a line. */
const MOST_CITED_LINES = 5000;

/**
 * The citations of finish's arguments: objects with a path and lines (numbers or numeric strings;
 * `line` alone, or an end missing, is one line), or strings such as `src/a.ts:12-20`. Anything
 * else is dropped; at most 50.
 */
export function parseCitations(value: unknown): Citation[] {
  const items = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
  const out: Citation[] = [];
  for (const item of items) {
    if (out.length >= MOST_CITATIONS) break;
    if (typeof item === 'string') {
      out.push(...citationsFromText(item).slice(0, MOST_CITATIONS - out.length));
      continue;
    }
    if (typeof item !== 'object' || item === null || Array.isArray(item)) continue;
    const record = item as Record<string, unknown>;
    const file = record.path ?? record.file;
    if (typeof file !== 'string' || file.trim() === '' || file.length > 1000 || file.includes('\0')) continue;
    const start = whole(record.start_line ?? record.line ?? record.start);
    const end = whole(record.end_line ?? record.end) ?? start;
    if (start === undefined || end === undefined || end < start) continue;
    const citation: Citation = { path: file.trim(), start_line: start, end_line: end };
    if (typeof record.quote === 'string' && record.quote.trim() !== '') citation.quote = record.quote.slice(0, 2000);
    out.push(citation);
  }
  return out;
}

const PATH = String.raw`((?:[\w@+-]|\.{1,2}(?=[\w/]))[\w@+.\-/]*)`;
const MENTION = new RegExp(
  String.raw`(?<![\w/.:-])${PATH}(?::(\d+)(?:\s*[-–]\s*(\d+))?|#L(\d+)(?:-L?(\d+))?|,?\s+lines?\s+(\d+)(?:\s*(?:[-–]|to)\s*(\d+))?)`,
  'g',
);

/**
 * Citations mentioned in prose (a model that answered without finish): `src/a.ts:12`,
 * `src/a.ts:12-20`, `src/a.ts#L12-L20`, `src/a.ts lines 12–20`. A path must have a `/` or an
 * extension; URLs are not paths. Duplicates once; at most 50.
 */
export function citationsFromText(text: string): Citation[] {
  const out: Citation[] = [];
  const seen = new Set<string>();
  for (const match of text.slice(0, 200_000).matchAll(MENTION)) {
    const file = (match[1] ?? '').replace(/[.]+$/, '');
    if (!/[/]|\.\w+$/.test(file) || /^\/\//.test(file)) continue;
    const start = Number(match[2] ?? match[4] ?? match[6]);
    const end = Number(match[3] ?? match[5] ?? match[7] ?? start);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 1 || end < start) continue;
    const key = `${file}:${start}-${end}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: file, start_line: start, end_line: end });
    if (out.length >= MOST_CITATIONS) break;
  }
  return out;
}

/**
 * Each citation checked against the files: inside the roots and the task's paths, the lines exist,
 * and the quote (whitespace-normalised, read_file's `12| ` numbering ignored, `...` standing for
 * left-out text) appears within those lines. Files are streamed, never read whole.
 */
export async function verifyCitations(
  citations: readonly Citation[],
  scope: AgentScope,
  signal: AbortSignal,
): Promise<CheckedCitation[]> {
  const out: CheckedCitation[] = [];
  for (const citation of citations.slice(0, MOST_CITATIONS)) {
    if (signal.aborted) throw signal.reason;
    out.push({ ...citation, ...(await check(citation, scope, signal)) });
  }
  return out;
}

/** `k/n`: the result's citations_verified. */
export function citationsVerified(checked: readonly CheckedCitation[]): string {
  return `${checked.filter((c) => c.verified).length}/${checked.length}`;
}

async function check(
  citation: Citation,
  scope: AgentScope,
  signal: AbortSignal,
): Promise<{ verified: boolean; reason: string }> {
  const where = await scope.resolve(citation.path, 'file');
  if ('refused' in where) {
    const reason =
      where.kind === 'outside'
        ? 'outside the allowed folders'
        : where.kind === 'not-file'
          ? 'a folder, not a file'
          : where.kind === 'missing'
            ? 'no such file'
            : 'not a readable path';
    return { verified: false, reason };
  }
  const to = Math.min(citation.end_line, citation.start_line + MOST_CITED_LINES - 1);
  const window = await readLines(where.real, {
    from: citation.start_line,
    to,
    maxLineBytes: 4000,
    count: false,
    signal,
  });
  if (window.binary) return { verified: false, reason: 'binary file' };
  const last = window.lines.at(-1)?.n ?? 0;
  if (last < to) return { verified: false, reason: `file has ${count(window.total ?? last)} lines` };
  if (citation.end_line > to) {
    // The cited range runs past what is compared: its end must still exist.
    const tail = await readLines(where.real, {
      from: citation.end_line,
      to: citation.end_line,
      maxLineBytes: 1,
      count: false,
      signal,
    });
    if (tail.lines.length === 0) return { verified: false, reason: `file has ${count(tail.total ?? 0)} lines` };
  }
  if (citation.quote === undefined) return { verified: true, reason: 'ok' };
  const parts = quoteParts(citation.quote);
  if (parts.length === 0) return { verified: true, reason: 'ok' };
  const haystack = normalise(window.lines.map((l) => l.text).join('\n'));
  let at = 0;
  for (const part of parts) {
    const found = haystack.indexOf(part, at);
    if (found === -1) {
      const checked = to < citation.end_line ? ` (only a range's first ${count(MOST_CITED_LINES)} are checked)` : '';
      return { verified: false, reason: `quote not in lines ${count(citation.start_line)}–${count(to)}${checked}` };
    }
    at = found + part.length;
  }
  return { verified: true, reason: 'quote found' };
}

/** The quote's pieces to find in order: numbering prefixes dropped, split where the model wrote `...`. */
function quoteParts(quote: string): string[] {
  const unnumbered = quote
    .split('\n')
    .map((line) => line.replace(/^\s*(?:L?\d+\s*[|:]\s?)/, ''))
    .join('\n');
  return unnumbered
    .split(/\.\.\.|…/)
    .map(normalise)
    .filter((part) => part !== '');
}

function normalise(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function whole(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 1 ? n : undefined;
}
