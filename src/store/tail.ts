import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { DamagedRecordError, parseRecord, type TaskRecord, taskRecordSchema } from './records.js';

/** New bytes of a results file up to this are read synchronously (~50 µs from the page cache). */
const SYNC_READ_BYTES = 256 * 1024;

/**
 * One job's results file, read as it grows: each call reads only what was appended since the last
 * (a poll of a 10,000-task job costs a stat), keeps a torn last line for the next call, and skips
 * a damaged line with a warning naming the file and the line.
 */
export class ResultsTail {
  /** Every record read, in finish order (a task that ran again has one per attempt). */
  records: TaskRecord[] = [];
  /** Each task's latest record. */
  latest = new Map<number, TaskRecord>();
  private bytes = 0;
  private partial = '';
  /** Whole lines read so far: the number of the next one is this plus one. */
  private lines = 0;
  private readonly file: string;
  private readonly warn: (message: string) => void;

  constructor(file: string, warn: (message: string) => void) {
    this.file = file;
    this.warn = warn;
  }

  /**
   * Reads what is new. A stat, and a read of what is new when that is small, without a turn of
   * the event loop each (a busy pool keeps turns long; see ScriptPool.turnToSpawn); a large
   * backlog is read off the loop. A missing file reads as nothing new.
   */
  async update(): Promise<void> {
    const size = statSync(this.file, { throwIfNoEntry: false })?.size;
    if (size === undefined) return;
    if (size < this.bytes) this.restart();
    if (size === this.bytes) return;
    const length = size - this.bytes;
    const buffer =
      length <= SYNC_READ_BYTES
        ? readRange(this.file, this.bytes, length)
        : await readRangeAsync(this.file, this.bytes, length);
    this.bytes += buffer.length;
    const lines = (this.partial + buffer.toString('utf8')).split('\n');
    // Only whole lines: the rest is still being written (or torn by a crash, and ended by the next append).
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      this.lines++;
      if (line.length === 0) continue;
      try {
        const record = parseRecord(taskRecordSchema, line, this.file, this.lines);
        this.records.push(record);
        this.latest.set(record.index, record);
      } catch (error) {
        if (!(error instanceof DamagedRecordError)) throw error;
        this.warn(`skipping a record: ${error.message}`);
      }
    }
  }

  /** The file shrank (a job removed and made again): read it from the start. */
  private restart(): void {
    this.bytes = 0;
    this.partial = '';
    this.lines = 0;
    // New containers: a caller still holding the old ones keeps what it was given.
    this.records = [];
    this.latest = new Map();
  }
}

export function readRange(file: string, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  const fd = openSync(file, 'r');
  try {
    return buffer.subarray(0, readSync(fd, buffer, 0, length, position));
  } finally {
    closeSync(fd);
  }
}

async function readRangeAsync(file: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
