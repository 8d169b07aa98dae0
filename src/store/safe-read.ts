import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { DamagedRecordError } from './records.js';

/*
 * Every read of the state directory goes through here: the directory is untrusted input (a full
 * disk, a crash, a hand edit, another program). A file is opened without following a symlink
 * planted in its place (O_NOFOLLOW) and without waiting for a writer if it is a FIFO (O_NONBLOCK),
 * refused unless it is a regular file, and read only up to a cap for its type. What is refused
 * throws DamagedRecordError naming the file and why; a file that is not there throws ENOENT as ever.
 */

/** How much of each kind of state file is read at most (generous: far past what a server writes). */
export const STATE_CAPS = {
  /** job.json: a few hundred bytes, plus the kind's options. */
  meta: 1024 * 1024,
  /** owner.<N>: `{"pid":…,"start":…}`. */
  owner: 4096,
  /** live/<pid>.json: a few KB of figures. */
  live: 1024 * 1024,
  /** inputs.jsonl: written at submit, whose inputs_file forms are capped at 256 MB. */
  inputs: 256 * 1024 * 1024,
  /** runs.log and requeued.log: a few bytes a task start. */
  runs: 64 * 1024 * 1024,
  /** One line of results.jsonl: a record holds a preview of its output, never the whole of a large one. */
  resultLine: 16 * 1024 * 1024,
  /** What is read of results.jsonl or changes.log in one go (a larger backlog is read in steps). */
  chunk: 16 * 1024 * 1024,
  /** A quarantine note (damaged.json). */
  note: 64 * 1024,
} as const;

export const SAFE_READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;

/** What a refused file is, in words (for the log line and the `damaged` reason). */
function refusal(file: string, error: unknown): never {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') throw new DamagedRecordError(file, 'it is a symlink (not followed)');
  if (code === 'ENXIO') throw new DamagedRecordError(file, 'it is a socket or a FIFO, not a regular file');
  throw error;
}

function checkRegular(file: string, info: Stats, maxBytes: number | undefined): void {
  if (!info.isFile()) throw new DamagedRecordError(file, `it is ${kindOf(info)}, not a regular file`);
  if (maxBytes !== undefined && info.size > maxBytes)
    throw new DamagedRecordError(file, `it is ${info.size} bytes, over the ${maxBytes} a file of its kind may hold`);
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** A state file whole, as UTF-8 (invalid bytes read as U+FFFD, and then usually fail their schema). */
export async function readStateFile(file: string, maxBytes: number): Promise<string> {
  return (await readStateBytes(file, maxBytes)).toString('utf8');
}

/** A state file whole, as bytes. */
export async function readStateBytes(file: string, maxBytes: number): Promise<Buffer> {
  return (await readWhole(file, maxBytes)).bytes;
}

/** A state file whole, as UTF-8, with when it was last written (a control request's age). */
export async function readStateFileAndTime(file: string, maxBytes: number): Promise<{ text: string; mtimeMs: number }> {
  const { bytes, info } = await readWhole(file, maxBytes);
  return { text: bytes.toString('utf8'), mtimeMs: info.mtimeMs };
}

async function readWhole(file: string, maxBytes: number): Promise<{ bytes: Buffer; info: Stats }> {
  const handle = await open(file, SAFE_READ_FLAGS).catch((error: unknown) => refusal(file, error));
  try {
    const info = await handle.stat();
    checkRegular(file, info, maxBytes);
    // Read to the size seen, not to the end: a file growing meanwhile is not read past the cap.
    const buffer = Buffer.alloc(info.size);
    const { bytesRead } = await handle.read(buffer, 0, info.size, 0);
    return { bytes: buffer.subarray(0, bytesRead), info };
  } finally {
    await handle.close();
  }
}

/** `length` bytes from `position` (fewer at the end), synchronously: for the cheap polls of results and changes. */
export function readStateRange(file: string, position: number, length: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, SAFE_READ_FLAGS);
  } catch (error) {
    refusal(file, error);
  }
  try {
    checkRegular(file, fstatSync(fd), undefined);
    const buffer = Buffer.alloc(Math.min(length, STATE_CAPS.chunk));
    return buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, position));
  } finally {
    closeSync(fd);
  }
}

/** The same, off the event loop (a large backlog). At most STATE_CAPS.chunk bytes. */
export async function readStateRangeAsync(file: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(file, SAFE_READ_FLAGS).catch((error: unknown) => refusal(file, error));
  try {
    checkRegular(file, await handle.stat(), undefined);
    const buffer = Buffer.alloc(Math.min(length, STATE_CAPS.chunk));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
