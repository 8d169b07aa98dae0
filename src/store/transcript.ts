import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';

/** The most of a transcript's end read at once (the dashboard shows a task's latest steps). */
export const MAX_TRANSCRIPT_BYTES = 256 * 1024;

/** The end of a task's transcript, as its JSONL lines parsed. */
export interface TranscriptTail {
  /** Its lines that hold a JSON object, in order. */
  lines: Array<Record<string, unknown>>;
  /** Only the end was read: earlier lines are left out. */
  cut: boolean;
  /** The file's size when read. */
  bytes: number;
  /** Lines that were not a JSON object (damaged), left out. */
  skipped: number;
}

/** A transcript the store will not read, and why (a path outside the job's output folder, say). */
export class TranscriptRefused extends Error {
  override readonly name = 'TranscriptRefused';
}

/**
 * The end of a transcript a task wrote in its job's output folder (at most `maxBytes`). `file` is
 * absolute or relative to `outputDir`; it is refused unless it is a regular file inside that
 * folder, symlinks resolved (its own name may not be one), so a path read from a record or a live
 * file cannot make the dashboard read anything else. A line still being written is not read.
 */
export async function readTranscript(
  outputDir: string,
  file: string,
  maxBytes = MAX_TRANSCRIPT_BYTES,
): Promise<TranscriptTail> {
  const resolved = path.resolve(outputDir, file);
  if (!isInside(outputDir, resolved)) throw new TranscriptRefused(`${file} is not inside the job's output folder.`);
  const root = await realpath(outputDir);
  const folder = await realpath(path.dirname(resolved)).catch(() => undefined);
  if (folder === undefined || !isInside(root, path.join(folder, path.basename(resolved))))
    throw new TranscriptRefused(`${file} is not inside the job's output folder.`);
  // No symlink in its place (O_NOFOLLOW), no FIFO that would block the read (O_NONBLOCK).
  const handle = await open(path.join(folder, path.basename(resolved)), openFlags).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new TranscriptRefused(`${file} is a symlink.`);
    throw error;
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new TranscriptRefused(`${file} is not a regular file.`);
    const start = Math.max(0, info.size - maxBytes);
    const buffer = Buffer.alloc(info.size - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    return { ...parseTail(buffer.subarray(0, bytesRead).toString('utf8'), start > 0), bytes: info.size };
  } finally {
    await handle.close();
  }
}

const openFlags = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;

function isInside(folder: string, file: string): boolean {
  const relative = path.relative(folder, file);
  return relative !== '' && relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

/** Whole lines only: a cut start is the end of a line, and a last line without its newline is still being written. */
function parseTail(text: string, cut: boolean): Omit<TranscriptTail, 'bytes'> {
  const pieces = text.split('\n');
  pieces.pop();
  if (cut) pieces.shift();
  const lines: TranscriptTail['lines'] = [];
  let skipped = 0;
  for (const piece of pieces) {
    if (piece.trim() === '') continue;
    try {
      const value: unknown = JSON.parse(piece);
      if (value !== null && typeof value === 'object' && !Array.isArray(value))
        lines.push(value as Record<string, unknown>);
      else skipped++;
    } catch {
      skipped++;
    }
  }
  return { lines, cut, skipped };
}
