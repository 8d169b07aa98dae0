import { lstatSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { DamagedRecordError, parseRecord, type TaskRecord, taskRecordSchema } from './records.js';
import { readStateRange, readStateRangeAsync, STATE_CAPS } from './safe-read.js';

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
  /** The line being read is over STATE_CAPS.resultLine: its rest is skipped up to its newline. */
  private overlong = false;
  private decoder = new StringDecoder('utf8');
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
    const info = lstatSync(this.file, { throwIfNoEntry: false });
    if (info === undefined) return;
    // A FIFO, a symlink or a folder in its place: the job is damaged, not empty (and never appended to).
    if (!info.isFile()) throw new DamagedRecordError(this.file, 'it is not a regular file');
    const size = info.size;
    if (size < this.bytes) this.restart();
    while (size > this.bytes) {
      const length = size - this.bytes;
      const buffer =
        length <= SYNC_READ_BYTES
          ? readStateRange(this.file, this.bytes, length)
          : await readStateRangeAsync(this.file, this.bytes, length);
      // Shrunk meanwhile: read again from the start next time.
      if (buffer.length === 0) return;
      this.bytes += buffer.length;
      // A character cut between two reads is decoded whole with the next.
      this.take(this.decoder.write(buffer));
    }
  }

  /** Whole lines only: the rest is still being written (or torn by a crash, and ended by the next append). */
  private take(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      this.lines++;
      if (this.overlong) {
        // The end of a line too long to keep: skipped with it.
        this.overlong = false;
        continue;
      }
      if (line.length > 0) this.parse(line);
    }
    if (this.partial.length > STATE_CAPS.resultLine) {
      if (!this.overlong)
        this.warn(
          `skipping a record: ${this.file} line ${this.lines + 1} is damaged: over ${STATE_CAPS.resultLine} characters`,
        );
      this.partial = '';
      this.overlong = true;
    }
  }

  private parse(line: string): void {
    try {
      const record = parseRecord(taskRecordSchema, line, this.file, this.lines);
      this.records.push(record);
      this.latest.set(record.index, record);
    } catch (error) {
      if (!(error instanceof DamagedRecordError)) throw error;
      // Its task counts as not finished: a resume runs it again.
      this.warn(`skipping a record: ${error.message}`);
    }
  }

  /** The file shrank (a job removed and made again): read it from the start. */
  private restart(): void {
    this.bytes = 0;
    this.partial = '';
    this.lines = 0;
    this.overlong = false;
    this.decoder = new StringDecoder('utf8');
    // New containers: a caller still holding the old ones keeps what it was given.
    this.records = [];
    this.latest = new Map();
  }
}
