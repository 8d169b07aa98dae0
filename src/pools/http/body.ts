import { open, rm, type FileHandle } from 'node:fs/promises';
import type { Redactor } from './secrets.js';

export interface BodyLimits {
  /** Bytes kept in memory for the inline preview (and the whole body when it is this small). */
  inlineBytes: number;
  /** Bytes kept in memory for JSON parsing, when the body looks like JSON. */
  keepBytes: number;
  /** Hard cap on bytes read from the network; the rest is never read. */
  maxBytes: number;
}

export interface ReadBody {
  /** Bytes read from the network (≤ maxBytes). */
  bytes: number;
  /** The cap was hit: the server had more, which was not read. */
  truncated: boolean;
  /** The first `keepBytes` of the redacted body, or all of it when `complete`. */
  kept: Buffer;
  /** `kept` is the whole (redacted) body. */
  complete: boolean;
  /** Set when the body was larger than `inlineBytes`: the whole redacted body (up to the cap) is there. */
  file?: string;
}

/**
 * Streams a response body: counts it, stops at the cap (destroying the stream, so the socket is
 * closed and the rest never arrives), keeps a bounded prefix in memory, and writes everything
 * past the inline size to `filePath`. Memory stays at about `keepBytes` whatever the body's size.
 * Secret values are removed from the bytes before they are kept or written. When reading fails
 * (connection dropped, timeout, cancel) the partial file is removed: no result names it, and a
 * retry must not leave an earlier attempt's bytes behind.
 */
export async function readBody(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  limits: BodyLimits,
  filePath: string,
  redactor: Redactor,
): Promise<ReadBody> {
  const filter = redactor.stream();
  const keptParts: Buffer[] = [];
  let keptBytes = 0;
  let complete = true;
  // Redacted bytes waiting for the file while the body still fits inline.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let file: FileHandle | undefined;
  let bytes = 0;
  let truncated = false;

  const keep = (data: Buffer): void => {
    if (data.length === 0) return;
    const room = limits.keepBytes - keptBytes;
    if (room <= 0 || data.length > room) complete = false;
    if (room <= 0) return;
    const part = data.length > room ? Buffer.from(data.subarray(0, room)) : data;
    keptParts.push(part);
    keptBytes += part.length;
  };
  const output = async (data: Buffer): Promise<void> => {
    if (data.length === 0) return;
    keep(data);
    if (file) {
      await file.write(data);
      return;
    }
    pending.push(data);
    pendingBytes += data.length;
    if (pendingBytes > limits.inlineBytes) {
      file = await open(filePath, 'w', 0o600);
      for (const part of pending) await file.write(part);
      pending = [];
    }
  };

  let failed = false;
  try {
    for await (const chunk of body) {
      let piece = chunk;
      if (bytes + piece.length > limits.maxBytes) {
        piece = piece.subarray(0, limits.maxBytes - bytes);
        truncated = true;
      }
      bytes += piece.length;
      await output(filter.push(piece));
      if (truncated) break;
    }
    await output(filter.end());
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    if (truncated) body.destroy();
    await file?.close();
    if (failed && file) await rm(filePath, { force: true });
  }
  const result: ReadBody = { bytes, truncated, kept: Buffer.concat(keptParts), complete: complete && !truncated };
  if (file) result.file = filePath;
  return result;
}
