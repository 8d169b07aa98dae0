import { constants, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { setImmediate as nextTurn } from 'node:timers/promises';
import * as z from 'zod';
import { isMonitorError, MonitorError } from '../errors.js';
import { type PathRules, resolveInsideRoots } from '../paths.js';
import { closest, MAX_ARGUMENT_DEPTH, nestsDeeper } from './arguments.js';
import type { TaskCap } from '../pools/kind.js';

/**
 * A batch too large for one JSON-RPC message comes as a JSONL file the server reads itself
 * (`inputs_file` beside `inputs`, and the like): one element of the inline list per line.
 */

/** The largest list file read: every task is held in memory until the job is stored. */
export const MAX_LIST_FILE_BYTES = 256 * 1024 * 1024;
/**
 * The longest line read: one line is one task, and a line is held several times over while it is
 * parsed (100 MB took the server to 800 MB). As much as a script's stdin gets from an upstream task.
 */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;
/** A line's element sits two levels into the call's arguments (`inputs[N]`): it may nest as deep as inline. */
const MAX_LINE_DEPTH = MAX_ARGUMENT_DEPTH - 2;
/** Read a slice at a time, and let other work run every few hundred lines: parsing never holds the event loop for long. */
const READ_CHUNK_BYTES = 1024 * 1024;
const LINES_PER_TURN = 500;
const PREVIEW_CHARS = 80;

/** One inline list argument and the file argument that may stand in for it. */
export interface ListFileSpec<T> {
  /** The argument naming the file, e.g. `inputs_file`. */
  argument: string;
  /** The inline list it stands for, e.g. `inputs`. */
  list: string;
  /** What one line holds: the schema of one element of the inline list. */
  element: z.ZodType<T>;
  /** The kind's task cap: a file is not read past it. */
  cap: TaskCap;
  /** One valid line, for hints. */
  example: string;
}

/** A list as given inline, or read from a file (then with each element's line number, from 1). */
export interface LoadedList<T> {
  items: T[];
  source?: { file: string; lines: number[] };
}

/** Where a list file may be (the server's config has both): the allowed folders, by the system's path rules. */
export interface AllowedPlaces {
  allowedRoots: readonly string[];
  pathRules: PathRules;
}

/**
 * The list from whichever of the inline argument or the file was given; undefined when neither
 * was. Both at once is an error: which one the caller meant is not ours to guess.
 */
export async function listOrFile<T>(
  spec: ListFileSpec<T>,
  inline: readonly T[] | undefined,
  file: string | undefined,
  places: AllowedPlaces,
  signal?: AbortSignal,
): Promise<LoadedList<T> | undefined> {
  if (inline !== undefined && file !== undefined) {
    throw new MonitorError('INVALID_INPUT', `Give either ${spec.list} or ${spec.argument}, not both.`, {
      hint: `Use ${spec.argument} for a large batch (the server reads the file), ${spec.list} for a short one. Nothing was started.`,
    });
  }
  if (file !== undefined) return readListFile(spec, file, places, signal);
  return inline === undefined ? undefined : { items: [...inline] };
}

/** listOrFile for a list the tool cannot do without. */
export async function requiredListOrFile<T>(
  spec: ListFileSpec<T>,
  inline: readonly T[] | undefined,
  file: string | undefined,
  places: AllowedPlaces,
  signal?: AbortSignal,
): Promise<LoadedList<T>> {
  const loaded = await listOrFile(spec, inline, file, places, signal);
  if (loaded) return loaded;
  throw new MonitorError(
    'INVALID_INPUT',
    `Give the tasks: ${spec.list} (a list) or ${spec.argument} (a JSONL file, one per line).`,
    {
      hint: `e.g. ${spec.list}: [${spec.example}], or ${spec.argument}: "tasks.jsonl" holding lines like ${spec.example}.`,
    },
  );
}

/**
 * An error the planner raised about `list[N]`, told as the file's line instead when the list came
 * from a file (blank lines are skipped, so N alone would not find it); anything else as it is.
 */
export function withFileLine(
  error: unknown,
  spec: ListFileSpec<unknown>,
  loaded: LoadedList<unknown> | undefined,
): unknown {
  if (!loaded?.source || !isMonitorError(error)) return error;
  const match = new RegExp(`^${spec.list}\\[(\\d+)\\]`).exec(error.message);
  const line = match ? loaded.source.lines[Number(match[1])] : undefined;
  if (!match || line === undefined) return error;
  return new MonitorError<string>(error.code, `${spec.argument} line ${line}${error.message.slice(match[0].length)}`, {
    hint: error.hint,
    retryable: error.retryable,
    cause: error,
  });
}

/**
 * Reads a UTF-8 JSONL file inside the allowed folders: blank lines skipped, every other line one
 * element checked against `spec.element`. Refuses anything but a regular file, files over
 * MAX_LIST_FILE_BYTES, and more than `spec.cap.max` elements (it stops reading there).
 */
export async function readListFile<T>(
  spec: ListFileSpec<T>,
  file: string,
  places: AllowedPlaces,
  signal?: AbortSignal,
): Promise<LoadedList<T>> {
  const real = await resolveInsideRoots(file, places.allowedRoots, { what: spec.argument, rules: places.pathRules });
  try {
    // Checked before opening: opening a FIFO waits for a writer, and a device may act on open.
    checkRegularFile(spec, file, await stat(real));
    // O_NONBLOCK: a file swapped for a FIFO since the check does not hang the open; O_NOFOLLOW:
    // nor is it swapped for a symlink out of the roots. fstat then tells what was opened.
    const handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | (constants.O_NOFOLLOW ?? 0));
    try {
      checkRegularFile(spec, file, await handle.stat());
      return await parseLines(
        spec,
        file,
        (buffer) => handle.read(buffer, 0, buffer.length, null).then((r) => r.bytesRead),
        signal,
      );
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (isMonitorError(error)) throw error;
    throw new MonitorError(
      'INVALID_INPUT',
      `Could not read ${spec.argument} "${file}": ${error instanceof Error ? error.message : String(error)}.`,
      {
        hint: 'Check that the file exists and is readable, then call again (nothing was started).',
        cause: error,
      },
    );
  }
}

function checkRegularFile(spec: ListFileSpec<unknown>, file: string, stats: Stats): void {
  if (!stats.isFile()) {
    throw new MonitorError('INVALID_INPUT', `${spec.argument} "${file}" is ${whatItIs(stats)}, not a regular file.`, {
      hint: `Give the path of a JSONL file: one element of ${spec.list} per line, e.g. ${spec.example}.`,
    });
  }
  if (stats.size > MAX_LIST_FILE_BYTES) throw tooLarge(spec, file, stats.size);
}

function whatItIs(stats: Stats): string {
  if (stats.isDirectory()) return 'a folder';
  if (stats.isFIFO()) return 'a named pipe (FIFO)';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'not a file';
}

function tooLarge(spec: ListFileSpec<unknown>, file: string, bytes: number): MonitorError {
  return new MonitorError(
    'INVALID_INPUT',
    `${spec.argument} "${file}" is ${(bytes / 1024 / 1024).toFixed(1)} MiB; at most ${MAX_LIST_FILE_BYTES / 1024 / 1024} MiB is read.`,
    {
      hint: `Split it into smaller files, one call each (at most ${spec.cap.max} lines per call).`,
    },
  );
}

/**
 * Splits what `read` returns into lines as bytes arrive (a newline byte never occurs inside a
 * UTF-8 sequence), keeping only the unfinished last line between reads.
 */
async function parseLines<T>(
  spec: ListFileSpec<T>,
  file: string,
  read: (buffer: Buffer) => Promise<number>,
  signal: AbortSignal | undefined,
): Promise<LoadedList<T>> {
  const items: T[] = [];
  const lines: number[] = [];
  const known = spec.element instanceof z.ZodObject ? Object.keys(spec.element.shape) : [];
  let lineNumber = 0;
  let pending: Buffer[] = [];
  let total = 0;
  let linesThisTurn = 0;
  let pendingBytes = 0;
  const take = (bytes: Buffer): void => {
    lineNumber++;
    const value = parseLine(spec, file, bytes, lineNumber);
    if (value === undefined) return;
    if (items.length >= spec.cap.max) throw tooManyTasks(spec);
    const parsed = spec.element.safeParse(value.json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((issue) => describeIssue(issue, known));
      throw new MonitorError('INVALID_INPUT', `${spec.argument} line ${lineNumber}: ${problems.join('; ')}.`, {
        hint: `Each line is one element of ${spec.list}, e.g. ${spec.example}. Fix that line and call again (nothing was started).`,
      });
    }
    items.push(parsed.data);
    lines.push(lineNumber);
  };

  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  for (;;) {
    if (signal?.aborted)
      throw new MonitorError('CANCELLED', `Reading ${spec.argument} was cancelled; nothing was started.`);
    const bytesRead = await read(buffer);
    if (bytesRead === 0) break;
    total += bytesRead;
    // The file may have grown since it was measured.
    if (total > MAX_LIST_FILE_BYTES) throw tooLarge(spec, file, total);
    const chunk = buffer.subarray(0, bytesRead);
    let start = 0;
    for (let newline = chunk.indexOf(0x0a, start); newline !== -1; newline = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, newline);
      if (pendingBytes + piece.length > MAX_LINE_BYTES) throw lineTooLong(spec, file, lineNumber + 1);
      take(pending.length === 0 ? piece : Buffer.concat([...pending, piece]));
      pending = [];
      pendingBytes = 0;
      start = newline + 1;
      // The read buffer is not reused before this loop ends, so waiting here is safe.
      if (++linesThisTurn >= LINES_PER_TURN) {
        linesThisTurn = 0;
        await nextTurn();
      }
    }
    // A copy: the read buffer is reused for the next slice.
    if (start < chunk.length) {
      // Held only up to the cap: a 100 MB line is refused after its first 16 MiB, never built whole.
      pendingBytes += chunk.length - start;
      if (pendingBytes > MAX_LINE_BYTES) throw lineTooLong(spec, file, lineNumber + 1);
      pending.push(Buffer.from(chunk.subarray(start)));
    }
  }
  if (pending.length > 0) take(Buffer.concat(pending));
  if (items.length === 0) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${spec.argument} "${file}" has no tasks: ${lineNumber === 0 ? 'it is empty' : 'every line is blank'}.`,
      {
        hint: `Write one element of ${spec.list} per line, e.g. ${spec.example}.`,
      },
    );
  }
  return { items, source: { file, lines } };
}

function tooManyTasks(spec: ListFileSpec<unknown>): MonitorError {
  return new MonitorError(
    'INVALID_INPUT',
    `${spec.argument} has more than ${spec.cap.max} tasks (non-blank lines); one call takes at most ${spec.cap.max}.`,
    {
      hint: `Split it into files of at most ${spec.cap.max} lines, one call each${spec.cap.setting ? `; the cap is "${spec.cap.setting}" in the config file` : ''}. Nothing was started.`,
    },
  );
}

function lineTooLong(spec: ListFileSpec<unknown>, file: string, lineNumber: number): MonitorError {
  return new MonitorError(
    'INVALID_INPUT',
    `${spec.argument} "${file}" line ${lineNumber} is longer than ${MAX_LINE_BYTES / 1024 / 1024} MiB, the most one line may hold; reading stopped there.`,
    {
      hint: `One line is one element of ${spec.list}: put large data in a file the task reads and pass its path in the line. Nothing was started.`,
    },
  );
}

/** One line's JSON value, or undefined for a blank line. */
function parseLine(
  spec: ListFileSpec<unknown>,
  file: string,
  bytes: Buffer,
  lineNumber: number,
): { json: unknown } | undefined {
  if (!isUtf8(bytes)) {
    throw new MonitorError('INVALID_INPUT', `${spec.argument} line ${lineNumber} is not valid UTF-8.`, {
      hint: 'Write the file as UTF-8 (binary data can go inside a JSON string, escaped). Nothing was started.',
    });
  }
  let text = bytes.toString('utf8');
  if (lineNumber === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
  if (text.endsWith('\r')) text = text.slice(0, -1);
  if (text.trim() === '') return undefined;
  // Before JSON.parse, which recurses: inline arguments get the same limit (arguments.ts).
  if (nestsDeeper(text, MAX_LINE_DEPTH)) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${spec.argument} "${file}" line ${lineNumber} nests deeper than ${MAX_ARGUMENT_DEPTH} levels (counted as ${spec.list}[…] inline).`,
      {
        hint: `Flatten that value (at most ${MAX_LINE_DEPTH} levels of objects and arrays in a line), or put it in a file the worker reads; nothing was started.`,
      },
    );
  }
  try {
    return { json: JSON.parse(text) as unknown };
  } catch (error) {
    // V8's message quotes the line itself: escaped and cut short like the preview.
    const reason = escapeControl(error instanceof Error ? error.message : String(error)).slice(0, 160);
    throw new MonitorError(
      'INVALID_INPUT',
      `${spec.argument} line ${lineNumber} is not valid JSON (${reason}): ${preview(text)}`,
      {
        hint: `Each line is one JSON value, e.g. ${spec.example}. Fix that line and call again (nothing was started).`,
      },
    );
  }
}

/** The start of a line, quoted, with control characters (NUL included) escaped. */
function preview(text: string): string {
  return JSON.stringify(text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text);
}

function escapeControl(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A zod issue of one line, as `field: problem` (unknown fields with the likely intended one). */
function describeIssue(issue: z.core.$ZodIssue, known: readonly string[]): string {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((key) => {
        const near = closest(key, known);
        return `unknown field "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
      })
      .join('; ');
  }
  const where = issue.path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
  return where ? `${where}: ${issue.message}` : issue.message;
}
