import { open } from 'node:fs/promises';

export interface NumberedLine {
  n: number;
  text: string;
  /** Bytes of the line left out (it was longer than maxLineBytes). */
  cut: number;
}

export interface LineWindow {
  /** A NUL byte in the first 8 KiB: not text. */
  binary: boolean;
  lines: NumberedLine[];
  /** Lines in the file, when the read went to its end; undefined when it stopped early. */
  total: number | undefined;
  /** Bytes of the file the window covers (whole lines, newlines included). */
  windowBytes: number;
  size: number;
}

export interface LineOptions {
  from: number;
  to: number;
  /** Longer lines keep this many bytes. */
  maxLineBytes: number;
  /** Go on to the end to count the lines (not past `countUpTo` bytes of file). */
  count: boolean;
  countUpTo?: number;
  signal: AbortSignal;
}

const CHUNK = 64 * 1024;
const SNIFF = 8192;

/**
 * Lines `from`..`to` (1-based) of a file, streamed in chunks: neither the file nor one long line
 * is held whole, so a 10 MB file or a minified one-line bundle costs a chunk and a window. Lines
 * are split on \n (a \r before it dropped), decoded as UTF-8 with bad bytes replaced.
 */
export async function readLines(file: string, options: LineOptions): Promise<LineWindow> {
  const handle = await open(file, 'r');
  try {
    const size = (await handle.stat()).size;
    const window: LineWindow = { binary: false, lines: [], total: undefined, windowBytes: 0, size };
    const buffer = Buffer.allocUnsafe(CHUNK);
    const countUpTo = options.countUpTo ?? 64 * 1024 * 1024;
    let n = 1;
    let parts: Buffer[] = [];
    let kept = 0;
    let lineBytes = 0;
    let position = 0;
    let lastByteWasNewline = true;
    for (;;) {
      if (options.signal.aborted) throw options.signal.reason;
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      if (position === 0 && chunk.subarray(0, SNIFF).includes(0)) return { ...window, binary: true };
      position += bytesRead;
      lastByteWasNewline = chunk[bytesRead - 1] === 10;
      let at = 0;
      while (at < chunk.length) {
        if (n > options.to) {
          // Past the window: only count the newlines that are left.
          if (!options.count || position > countUpTo) return window;
          const newline = chunk.indexOf(10, at);
          if (newline === -1) break;
          n++;
          at = newline + 1;
          continue;
        }
        const newline = chunk.indexOf(10, at);
        const end = newline === -1 ? chunk.length : newline;
        if (n >= options.from) {
          const room = options.maxLineBytes - kept;
          if (room > 0) {
            const piece = chunk.subarray(at, Math.min(end, at + room));
            parts.push(Buffer.from(piece));
            kept += piece.length;
          }
        }
        lineBytes += end - at;
        if (newline === -1) break;
        if (n >= options.from) finishLine(window, n, { parts, kept, bytes: lineBytes });
        window.windowBytes += n >= options.from ? 1 : 0;
        n++;
        parts = [];
        kept = 0;
        lineBytes = 0;
        at = newline + 1;
      }
    }
    // The last line has no newline after it.
    if (!lastByteWasNewline && n >= options.from && n <= options.to)
      finishLine(window, n, { parts, kept, bytes: lineBytes });
    window.total = lastByteWasNewline ? n - 1 : n;
    return window;
  } finally {
    await handle.close();
  }
}

function finishLine(window: LineWindow, n: number, line: { parts: Buffer[]; kept: number; bytes: number }): void {
  let text = Buffer.concat(line.parts).toString('utf8');
  if (text.endsWith('\r')) text = text.slice(0, -1);
  window.lines.push({ n, text, cut: Math.max(0, line.bytes - line.kept) });
  window.windowBytes += line.bytes;
}
