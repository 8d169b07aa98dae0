import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { JobMeta, TaskRecord } from './records.js';
import type { Logger } from '../log.js';
import { writeFileAtomic } from './atomic.js';

interface ResultCache {
  bytes: number;
  records: TaskRecord[];
  partial: string;
}

/** How many jobs' parsed results stay in memory; the others are read again from disk on demand. */
const CACHED_JOBS = 16;

interface AppendQueue {
  lines: string[];
  records: number;
  /** The write that will take `lines`; undefined once it has taken them. */
  batch: Promise<void> | undefined;
  /** Settles when the last write queued so far has finished (never rejects). */
  written: Promise<void>;
}

/**
 * The state directory: one folder per job.
 *   job.json       metadata, replaced atomically
 *   inputs.jsonl   one task input per line, written once (atomically) at submit
 *   results.jsonl  one finished task per line, appended; a torn last line is ignored on load
 *   out/           full outputs named by task index
 * The store is the source of truth for finished work; the engine keeps only what runs in memory.
 */
export class JobStore {
  readonly jobsDir: string;
  private readonly log: Logger;
  /** Per job: lines waiting for the write in flight to finish; they go out together in the next one. */
  private readonly appendQueues = new Map<string, AppendQueue>();
  /** Parsed results of the jobs read most recently (least recently used first); bounded. */
  private readonly resultCache = new Map<string, ResultCache>();
  /** One read at a time per job: concurrent collects must not parse the same bytes twice. */
  private readonly reads = new Map<string, Promise<unknown>>();
  /** Jobs whose results file was checked for a torn last line since this process started. */
  private readonly tailChecked = new Set<string>();

  constructor(stateDir: string, log: Logger) {
    this.jobsDir = path.join(stateDir, 'jobs');
    this.log = log;
  }

  static newJobId(): string {
    // 128 random bits: handles are unguessable, so one client cannot reach another's jobs by guessing.
    return `job_${randomBytes(16).toString('base64url')}`;
  }

  static isJobId(id: string): boolean {
    return /^job_[A-Za-z0-9_-]{22}$/.test(id);
  }

  jobDir(id: string): string {
    return path.join(this.jobsDir, id);
  }

  outputDir(id: string): string {
    return path.join(this.jobDir(id), 'out');
  }

  async init(): Promise<void> {
    await mkdir(this.jobsDir, { recursive: true, mode: 0o700 });
  }

  async createJob(meta: JobMeta, inputs: readonly unknown[]): Promise<void> {
    const dir = this.jobDir(meta.id);
    await mkdir(path.join(dir, 'out'), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path.join(dir, 'inputs.jsonl'), inputs.map((i) => JSON.stringify(i ?? null)).join('\n') + '\n');
    await writeFileAtomic(path.join(dir, 'results.jsonl'), '');
    // job.json last: a folder without it is an aborted submit and is swept on load.
    await writeFileAtomic(path.join(dir, 'job.json'), JSON.stringify(meta, null, 2));
  }

  async readMeta(id: string): Promise<JobMeta> {
    return JSON.parse(await readFile(path.join(this.jobDir(id), 'job.json'), 'utf8')) as JobMeta;
  }

  async writeMeta(meta: JobMeta): Promise<void> {
    await writeFileAtomic(path.join(this.jobDir(meta.id), 'job.json'), JSON.stringify(meta, null, 2));
  }

  appendResult(jobId: string, record: TaskRecord): Promise<void> {
    return this.appendResults(jobId, [record]);
  }

  /**
   * One write for many records (cancelling 10,000 queued tasks is one append, not 10,000).
   * Records arriving while a write is in flight are coalesced into the next one: writing each
   * record on its own (open, write, close) falls behind fast tasks, and every record waiting in
   * line keeps its finished task alive in memory.
   */
  appendResults(jobId: string, records: readonly TaskRecord[]): Promise<void> {
    let queue = this.appendQueues.get(jobId);
    if (!queue) {
      queue = { lines: [], records: 0, batch: undefined, written: Promise.resolve() };
      this.appendQueues.set(jobId, queue);
    }
    for (const record of records) queue.lines.push(JSON.stringify(record) + '\n');
    queue.records += records.length;
    if (queue.batch) return queue.batch;
    const current = queue;
    const file = path.join(this.jobDir(jobId), 'results.jsonl');
    // Starts once the previous write has finished, so lines never interleave or reorder.
    const batch = current.written.then(async () => {
      const text = current.lines.join('');
      const count = current.records;
      current.lines = [];
      current.records = 0;
      current.batch = undefined;
      try {
        await appendFile(file, (await this.tornTailPrefix(jobId, file)) + text);
      } catch (error) {
        this.log.error(`could not record ${count} task(s) of ${jobId}: ${String(error)}`);
        throw error;
      } finally {
        if (current.batch === undefined && this.appendQueues.get(jobId) === current) this.appendQueues.delete(jobId);
      }
    });
    current.batch = batch;
    current.written = batch.catch(() => undefined);
    return batch;
  }

  /**
   * A crash mid-append can leave a last line without its newline; appending straight after it would
   * glue the next record onto the torn one and lose both. Once per job, end such a line first.
   */
  private async tornTailPrefix(jobId: string, file: string): Promise<string> {
    if (this.tailChecked.has(jobId)) return '';
    this.tailChecked.add(jobId);
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

  /** Resolves once every append queued so far has reached the file. */
  async flush(jobId?: string): Promise<void> {
    const queues = jobId === undefined ? [...this.appendQueues.values()] : [this.appendQueues.get(jobId)];
    await Promise.all(queues.map((q) => q?.written));
  }

  async readInputs(jobId: string): Promise<unknown[]> {
    const text = await readFile(path.join(this.jobDir(jobId), 'inputs.jsonl'), 'utf8');
    return text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as unknown);
  }

  /**
   * All finished-task records of a job, in the order they finished. Reads only what was appended
   * since the last call, so polling a 10,000-task job stays cheap.
   */
  async readResults(jobId: string): Promise<readonly TaskRecord[]> {
    const previous = this.reads.get(jobId) ?? Promise.resolve();
    const next = previous.then(() => this.readNewResults(jobId));
    const settled = next.catch(() => undefined);
    this.reads.set(jobId, settled);
    void settled.then(() => {
      if (this.reads.get(jobId) === settled) this.reads.delete(jobId);
    });
    return next;
  }

  private async readNewResults(jobId: string): Promise<readonly TaskRecord[]> {
    const file = path.join(this.jobDir(jobId), 'results.jsonl');
    let cached = this.resultCache.get(jobId);
    if (cached) this.resultCache.delete(jobId);
    else cached = { bytes: 0, records: [], partial: '' };
    this.resultCache.set(jobId, cached);
    for (const [id] of this.resultCache) {
      if (this.resultCache.size <= CACHED_JOBS) break;
      if (id !== jobId) this.resultCache.delete(id);
    }
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      return cached.records;
    }
    if (size < cached.bytes) {
      cached.bytes = 0;
      cached.records = [];
      cached.partial = '';
    }
    if (size === cached.bytes) return cached.records;
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(size - cached.bytes);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, cached.bytes);
      cached.bytes += bytesRead;
      const text = cached.partial + buffer.subarray(0, bytesRead).toString('utf8');
      const lines = text.split('\n');
      cached.partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.length === 0) continue;
        try {
          cached.records.push(JSON.parse(line) as TaskRecord);
        } catch {
          this.log.warn(`ignoring an unreadable line in ${file}`);
        }
      }
    } finally {
      await handle.close();
    }
    return cached.records;
  }

  forget(jobId: string): void {
    this.resultCache.delete(jobId);
  }

  /** Every job with readable metadata; folders without it (a submit cut short) are removed. */
  async loadAll(): Promise<JobMeta[]> {
    return this.readMetas(true);
  }

  /** The same, touching nothing: for readers while a server may own the directory. */
  async loadAllReadOnly(): Promise<JobMeta[]> {
    return this.readMetas(false);
  }

  private async readMetas(removeBroken: boolean): Promise<JobMeta[]> {
    let names: string[];
    try {
      names = await readdir(this.jobsDir);
    } catch {
      return [];
    }
    const metas: JobMeta[] = [];
    for (const name of names) {
      if (!JobStore.isJobId(name)) continue;
      try {
        metas.push(JSON.parse(await readFile(path.join(this.jobsDir, name, 'job.json'), 'utf8')) as JobMeta);
      } catch {
        // Only old folders: a young one may be a submit another server is writing right now.
        if (!removeBroken || !(await isOlderThan(path.join(this.jobsDir, name), ABANDONED_SUBMIT_MS))) continue;
        this.log.warn(`job folder ${name} has no readable job.json (a submit cut short?); removing it`);
        await rm(path.join(this.jobsDir, name), { recursive: true, force: true });
      }
    }
    return metas.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async removeJob(jobId: string): Promise<void> {
    this.forget(jobId);
    await rm(this.jobDir(jobId), { recursive: true, force: true });
  }
}

/** A job folder without job.json this old is an abandoned submit, not one being written. */
const ABANDONED_SUBMIT_MS = 10 * 60_000;

async function isOlderThan(file: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(file)).mtimeMs > ms;
  } catch {
    return false;
  }
}
