import { appendFile, open } from 'node:fs/promises';

interface Queue {
  lines: string[];
  /** The write that will take `lines`; undefined once it has taken them. */
  batch: Promise<void> | undefined;
  /** Settles when the last write queued so far has finished (never rejects). */
  written: Promise<void>;
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

  /** Resolves once these lines (and every one queued before them) are in the file. */
  append(file: string, lines: readonly string[]): Promise<void> {
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
        await appendFile(file, (await this.tornTailPrefix(file)) + text, { mode: 0o600 });
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

  private async tornTailPrefix(file: string): Promise<string> {
    if (this.tailChecked.has(file)) return '';
    this.tailChecked.add(file);
    const handle = await open(file, 'r').catch(() => undefined);
    if (!handle) return '';
    try {
      const { size } = await handle.stat();
      if (size === 0) return '';
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, size - 1);
      return last[0] === 0x0a ? '' : '\n';
    } finally {
      await handle.close();
    }
  }
}
