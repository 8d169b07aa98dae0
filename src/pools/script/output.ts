import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';

/** How many of `bytes` may still go to disk (what is left of a task's and its job's allowance). */
export interface DiskAllowance {
  take(bytes: number): number;
}

/** No limit (tests, tools that capture a stream for themselves). */
export const UNLIMITED: DiskAllowance = { take: (bytes) => bytes };

/**
 * Collects one output stream of a task. Up to `capBytes` stays in memory; past that, everything
 * goes to `filePath` as it arrives (with backpressure), and memory keeps only a head and a tail,
 * so a worker printing gigabytes costs a file, not the server's memory.
 */
export class OutputCapture {
  bytes = 0;
  private chunks: Buffer[] = [];
  private head: Buffer | undefined;
  private tail: Buffer = Buffer.alloc(0);
  private file: WriteStream | undefined;
  private fileError: Error | undefined;
  private written = false;
  /** Bytes that reached the file; below `bytes` once the disk allowance ran out. */
  onDisk = 0;

  constructor(
    private readonly filePath: string,
    private readonly capBytes: number,
    private readonly keepBytes: number,
    private readonly allowance: DiskAllowance = UNLIMITED,
  ) {}

  /** True when some of the output was not written to the file (the allowance ran out). */
  get cut(): boolean {
    return (this.file !== undefined || this.written) && this.onDisk < this.bytes;
  }

  /** Reads `stream` to its end; pauses it while the file cannot keep up. */
  attach(stream: Readable | null | undefined): void {
    if (!stream) return;
    stream.on('data', (chunk: Buffer) => this.accept(chunk, stream));
  }

  /**
   * Takes one chunk of the output. `source`, when given, is paused while the file cannot keep up
   * (a warm process's pipes outlive the capture: its owner resumes them when the task ends).
   */
  accept(chunk: Buffer, source?: Readable): void {
    this.bytes += chunk.length;
    if (!this.file) {
      this.chunks.push(chunk);
      if (this.bytes > this.capBytes) this.spill(source);
      return;
    }
    this.keepTail(chunk);
    // After a write error, or past the allowance, the rest is only counted: the task must still end normally.
    if (this.fileError !== undefined) return;
    const allowed = this.allowance.take(chunk.length);
    if (allowed === 0) return;
    this.onDisk += allowed;
    if (!this.file.write(allowed === chunk.length ? chunk : chunk.subarray(0, allowed)) && source) {
      source.pause();
      this.file.once('drain', () => source.resume());
    }
  }

  /** True once the output outgrew memory and went to the file while running. */
  get spilled(): boolean {
    return this.file !== undefined;
  }

  /** Everything, when it stayed in memory. */
  whole(): Buffer | undefined {
    if (this.file) return undefined;
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  /** The first bytes (at least `keepBytes` when there were that many). */
  first(): Buffer {
    return this.head ?? this.whole() ?? Buffer.alloc(0);
  }

  /** The last `keepBytes` bytes. */
  last(): Buffer {
    const whole = this.whole();
    if (whole) return whole.subarray(Math.max(0, whole.length - this.keepBytes));
    return this.tail;
  }

  /**
   * Makes sure the file holds the whole output when `wanted` (or when it spilled), and returns its
   * path; small outputs that fit in the task's value never touch the disk.
   */
  async finish(wanted: boolean): Promise<string | undefined> {
    if (this.file) {
      const file = this.file;
      await new Promise<void>((resolve) => {
        if (file.closed) return resolve();
        file.once('close', resolve);
        file.end();
      });
      if (this.fileError) throw this.fileError;
      return this.filePath;
    }
    if (!wanted) return undefined;
    if (!this.written) {
      const whole = this.whole() ?? Buffer.alloc(0);
      this.onDisk = this.allowance.take(whole.length);
      await writeFile(this.filePath, whole.subarray(0, this.onDisk), { mode: 0o600 });
      this.written = true;
    }
    return this.filePath;
  }

  /** Moves what memory holds into the file and switches to streaming. */
  private spill(source: Readable | undefined): void {
    const all = Buffer.concat(this.chunks);
    this.chunks = [];
    this.head = Buffer.from(all.subarray(0, this.keepBytes));
    this.tail = Buffer.alloc(0);
    this.keepTail(all);
    this.file = createWriteStream(this.filePath, { mode: 0o600 });
    this.file.on('error', (error) => {
      this.fileError = error;
      source?.resume();
    });
    this.onDisk = this.allowance.take(all.length);
    this.file.write(all.subarray(0, this.onDisk));
  }

  private keepTail(chunk: Buffer): void {
    if (chunk.length >= this.keepBytes) {
      this.tail = Buffer.from(chunk.subarray(chunk.length - this.keepBytes));
      return;
    }
    const joined = Buffer.concat([this.tail, chunk]);
    this.tail = joined.subarray(Math.max(0, joined.length - this.keepBytes));
  }
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const lossyDecoder = new TextDecoder('utf-8');

/** UTF-8 text of `bytes`; invalid sequences become U+FFFD and `lossy` says so. */
export function decodeUtf8(bytes: Uint8Array): { text: string; lossy: boolean } {
  try {
    return { text: strictDecoder.decode(bytes), lossy: false };
  } catch {
    return { text: lossyDecoder.decode(bytes), lossy: true };
  }
}

/** The first at most `max` bytes, cut before a character boundary rather than inside one. */
export function headUtf8(bytes: Uint8Array, max: number): Uint8Array {
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** The last at most `max` bytes, starting at a character boundary. */
export function tailUtf8(bytes: Uint8Array, max: number): Uint8Array {
  let start = Math.max(0, bytes.length - max);
  const limit = Math.min(bytes.length, start + 4);
  while (start < limit && ((bytes[start] ?? 0) & 0xc0) === 0x80) start++;
  return bytes.subarray(start);
}
