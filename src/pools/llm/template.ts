import type { Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { MonitorError } from '../../errors.js';
import { LlmError } from './errors.js';
import { notAFile } from './glob.js';
import type { FileRef } from './types.js';

/** Placeholders a template may use when `files` are given; item values may not reuse them. */
export const FILE_PLACEHOLDERS = ['path', 'name', 'content', 'chunk', 'chunks'] as const;

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}/g;

/** The distinct placeholder names in a template, in order of first use. */
export function placeholdersOf(template: string): string[] {
  const names = new Set<string>();
  for (const match of template.matchAll(PLACEHOLDER)) names.add(match[1] ?? '');
  return [...names];
}

/**
 * Fills `{{name}}` in one pass: text that comes in through a value (a file's content, say) is never
 * scanned again, so a file containing `{{x}}` stays as it is.
 */
export function renderTemplate(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(PLACEHOLDER, (match, name: string) => values[name] ?? match);
}

/** Throws INVALID_INPUT naming the first placeholder that `available` does not provide. */
export function checkPlaceholders(template: string, available: ReadonlySet<string>, where: string): void {
  const used = placeholdersOf(template);
  if (used.length === 0) {
    throw new MonitorError(
      'INVALID_INPUT',
      'The template has no {{placeholders}}, so every task would get the same prompt.',
      {
        hint: `Use {{KEY}} for the value under KEY in each item${available.has('content') ? ', {{content}} and {{path}} for each file' : ''}.`,
      },
    );
  }
  const missing = used.filter((name) => !available.has(name));
  if (missing.length > 0) {
    throw new MonitorError(
      'INVALID_INPUT',
      `The template uses {{${missing.join('}}, {{')}}}, which ${where} does not provide.`,
      {
        hint: `Available here: ${[...available].map((n) => `{{${n}}}`).join(', ') || 'none'}. File placeholders ({{path}}, {{name}}, {{content}}, {{chunk}}, {{chunks}}) need \`files\`; other names come from each item's values.`,
      },
    );
  }
}

/** Rough token count for planning (≈ 4 characters a token in English, fewer in code). */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Bytes per token used to size chunks: deliberately low, so a chunk fits even for dense text. */
export const CHUNK_BYTES_PER_TOKEN = 3;

export interface ChunkRange {
  start: number;
  end: number;
}

/**
 * Cuts `buffer` into ranges of at most `maxBytes`, preferring to end at a line break in the last
 * fifth of each window, and never inside a UTF-8 character. Stops after `limit` ranges (the caller
 * refuses a file that needs more).
 */
export function chunkRanges(buffer: Uint8Array, maxBytes: number, limit = Infinity): ChunkRange[] {
  if (!(Number.isInteger(maxBytes) && maxBytes >= 16))
    throw new TypeError(`Expected maxBytes to be an integer from 16 and up, got ${maxBytes}`);
  const ranges: ChunkRange[] = [];
  let start = 0;
  while (start < buffer.length && ranges.length < limit) {
    let end = Math.min(buffer.length, start + maxBytes);
    if (end < buffer.length) {
      const floor = start + Math.floor(maxBytes * 0.8);
      let cut = -1;
      for (let i = end - 1; i >= floor; i--) {
        if (buffer[i] === 0x0a) {
          cut = i + 1;
          break;
        }
      }
      if (cut !== -1) end = cut;
      else while (end > start + 1 && ((buffer[end] ?? 0) & 0xc0) === 0x80) end--;
    }
    ranges.push({ start, end });
    start = end;
  }
  if (ranges.length === 0) ranges.push({ start: 0, end: 0 });
  return ranges;
}

/**
 * Where to cut `bytes` in two: after the last line break before the middle (when one lies past the
 * first quarter), else at the middle, never inside a UTF-8 character.
 */
export function middleBreak(bytes: Uint8Array): number {
  const middle = Math.floor(bytes.length / 2);
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).lastIndexOf(0x0a, middle);
  let offset = at > bytes.length / 4 ? at + 1 : middle;
  while (offset > 1 && ((bytes[offset] ?? 0) & 0xc0) === 0x80) offset--;
  return offset;
}

/** Reads a file for one task; refuses binary files and files over `maxBytes`. */
export async function readFileForPrompt(ref: FileRef, maxBytes: number): Promise<string> {
  let info: Stats;
  try {
    info = await stat(ref.path);
  } catch (error) {
    throw new MonitorError(
      'INVALID_INPUT',
      `The file ${ref.display} is gone (it was there when the job was submitted).`,
      {
        hint: 'Restore the file, or submit a new job without it.',
        cause: error,
      },
    );
  }
  // Replaced by a FIFO since submit, open() would wait for a writer forever.
  if (!info.isFile()) throw notAFile(ref.display, info);
  const size = info.size;
  const chunked = ref.start !== undefined && ref.end !== undefined;
  if (chunked && ref.size !== undefined && size !== ref.size) {
    throw new MonitorError(
      'INVALID_INPUT',
      `The file ${ref.display} changed size since the job was submitted (${ref.size} → ${size} bytes), so its chunk ${ref.chunk ?? '?'} no longer lines up.`,
      {
        hint: 'Submit the file again to cut fresh chunks.',
      },
    );
  }
  const start = chunked ? (ref.start ?? 0) : 0;
  const end = chunked ? (ref.end ?? size) : size;
  if (end - start > maxBytes) {
    throw new LlmError(
      'CONTEXT_OVERFLOW',
      `The file ${ref.display} is ${size} bytes, more than the ${maxBytes} bytes read per prompt.`,
      {
        hint: 'Pass chunk: true (or chunk_tokens) to split it into chunks, one task each.',
      },
    );
  }
  const handle = await open(ref.path, 'r');
  try {
    const buffer = Buffer.alloc(end - start);
    let read = 0;
    while (read < buffer.length) {
      const { bytesRead } = await handle.read(buffer, read, buffer.length - read, start + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    const bytes = buffer.subarray(0, read);
    if (looksBinary(bytes)) {
      throw new MonitorError(
        'INVALID_INPUT',
        `The file ${ref.display} looks binary (it contains NUL bytes); only text files can go into a prompt.`,
        {
          hint: 'Leave it out of `files` (narrow the glob), or convert it to text first with run_script_batch.',
        },
      );
    }
    return bytes.toString('utf8');
  } finally {
    await handle.close();
  }
}

export function looksBinary(bytes: Uint8Array): boolean {
  const probe = bytes.subarray(0, 8192);
  return probe.includes(0);
}

/** `{{path}}` as the model sees it: relative to the first allowed root when inside it. */
export function displayPath(real: string, roots: readonly string[]): string {
  for (const root of roots) {
    const relative = path.relative(root, real);
    if (relative && !relative.startsWith('..') && !path.isAbsolute(relative)) return relative;
  }
  return real;
}
