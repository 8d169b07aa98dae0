import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { SAFE_READ_FLAGS } from './safe-read.js';

/**
 * Appends never follow a symlink planted in the file's place (O_NOFOLLOW: it would write elsewhere)
 * nor wait for a reader of a FIFO (O_NONBLOCK: opening one fails at once with ENXIO).
 */
const APPEND_FLAGS =
  constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;

interface Queue {
  lines: string[];
  /** The write that will take `lines`; undefined once it has taken them. */
  batch: Promise<void> | undefined;
  /** Settles when the last write queued so far has finished (never rejects). */
  written: Promise<void>;
}

/** A file kept open between appends. */
interface KeptFile {
  fd: number;
  idle: NodeJS.Timeout | undefined;
}

export interface AppenderOptions {
  /** A kept file is closed after this long without an append. */
  keepOpenMs?: number;
  /** At most this many files are kept open (the least recently used idle one is closed first). */
  maxOpen?: number;
}

/**
 * Appends lines to files, one write at a time per file. Lines arriving while a write is in flight
 * go out together in the next one: writing each line on its own (open, write, close) falls behind
 * fast tasks, and every line waiting keeps its task's data alive in memory. Before the first
 * write to a file, a torn last line (a crash mid-append) is ended, so the next line is not glued
 * onto it and lost with it.
 */
export class Appender {
  private readonly queues = new Map<string, Queue>();
  private readonly tailChecked = new Set<string>();
  /** In least recently used order. */
  private readonly kept = new Map<string, KeptFile>();
  private readonly keepOpenMs: number;
  private readonly maxOpen: number;

  constructor(options: AppenderOptions = {}) {
    this.keepOpenMs = options.keepOpenMs ?? 2000;
    this.maxOpen = options.maxOpen ?? 32;
  }

  /**
   * Resolves once these lines (and every one queued before them) are in the file. `keepOpen`: the
   * file stays open for the next append and is written on this thread; only for a file nobody
   * renames or replaces while it is open. Why: with workers busy on both cores, each open, write
   * and close handed to libuv's thread pool cost ~0.3 ms of this thread (waking a pool thread that
   * competes with them), a quarter of the server's work per task; a small write here takes ~10 µs.
   */
  append(file: string, lines: readonly string[], keepOpen = false): Promise<void> {
    let queue = this.queues.get(file);
    if (!queue) {
      queue = { lines: [], batch: undefined, written: Promise.resolve() };
      this.queues.set(file, queue);
    }
    for (const line of lines) queue.lines.push(line.endsWith('\n') ? line : `${line}\n`);
    if (queue.batch) return queue.batch;
    const current = queue;
    // Starts once the previous write has finished, so lines never interleave or reorder.
    const batch = current.written.then(async () => {
      const text = current.lines.join('');
      current.lines = [];
      current.batch = undefined;
      try {
        const whole = (await this.tornTailPrefix(file)) + text;
        if (keepOpen) this.writeKept(file, whole);
        else await appendTo(file, whole);
      } finally {
        if (current.batch === undefined && this.queues.get(file) === current) this.queues.delete(file);
      }
    });
    current.batch = batch;
    current.written = batch.catch(() => undefined);
    return batch;
  }

  /** Resolves once every line queued so far (to the files whose names start with `prefix`) is written. */
  async flush(prefix = ''): Promise<void> {
    const pending = [...this.queues].filter(([file]) => file.startsWith(prefix)).map(([, queue]) => queue.written);
    await Promise.all(pending);
  }

  /** Closes the kept files under `prefix` (a folder about to be removed), or all of them. */
  release(prefix = ''): void {
    for (const [file, entry] of [...this.kept]) if (file.startsWith(prefix)) this.drop(file, entry);
  }

  private writeKept(file: string, text: string): void {
    let entry = this.kept.get(file);
    if (entry) this.kept.delete(file);
    else entry = { fd: openRegular(file), idle: undefined };
    // Re-inserted: the map's order is least recently used first.
    this.kept.set(file, entry);
    clearTimeout(entry.idle);
    const current = entry;
    try {
      const data = Buffer.from(text);
      for (let done = 0; done < data.length;) done += writeSync(current.fd, data, done);
    } catch (error) {
      this.drop(file, current);
      throw error;
    }
    current.idle = setTimeout(() => this.drop(file, current), this.keepOpenMs);
    // An idle file must not keep a server that is done from exiting.
    current.idle.unref();
    for (const [oldest, old] of this.kept) {
      if (this.kept.size <= this.maxOpen) break;
      this.drop(oldest, old);
    }
  }

  private drop(file: string, entry: KeptFile): void {
    clearTimeout(entry.idle);
    if (this.kept.get(file) !== entry) return;
    this.kept.delete(file);
    try {
      closeSync(entry.fd);
    } catch {
      // Already closed: nothing to do.
    }
  }

  private async tornTailPrefix(file: string): Promise<string> {
    if (this.tailChecked.has(file)) return '';
    this.tailChecked.add(file);
    const handle = await open(file, SAFE_READ_FLAGS).catch(() => undefined);
    if (!handle) return '';
    try {
      const info = await handle.stat();
      // Not a regular file: the append itself refuses it.
      if (!info.isFile() || info.size === 0) return '';
      const { size } = info;
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, size - 1);
      return last[0] === 0x0a ? '' : '\n';
    } finally {
      await handle.close();
    }
  }
}

async function appendTo(file: string, text: string): Promise<void> {
  const handle = await open(file, APPEND_FLAGS, 0o600);
  try {
    // A folder opens for nothing (EISDIR comes first); any other non-regular file is refused here.
    if (!(await handle.stat()).isFile()) throw new Error(`${file} is not a regular file; not appended to`);
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}

function openRegular(file: string): number {
  const fd = openSync(file, APPEND_FLAGS, 0o600);
  if (fstatSync(fd).isFile()) return fd;
  closeSync(fd);
  throw new Error(`${file} is not a regular file; not appended to`);
}
