import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import { Appender } from './appender.js';
import { writeFileAtomic } from './atomic.js';
import type { JobMeta, TaskRecord } from './records.js';

interface ResultCache {
  bytes: number;
  records: TaskRecord[];
  partial: string;
}

/** How many jobs' parsed results stay in memory; the others are read again from disk on demand. */
const CACHED_JOBS = 16;
/** New bytes of a results file up to this are read synchronously (~50 µs from the page cache). */
const SYNC_READ_BYTES = 256 * 1024;
/** The change log is started afresh (by a server starting) once it has grown this large. */
const CHANGES_ROTATE_BYTES = 1024 * 1024;

/** Who owns a job: the server (pid and start time) that took its latest generation. */
export interface Claim {
  generation: number;
  pid: number;
  start?: string;
}

/** Jobs whose folder changed (created, taken over, their metadata rewritten) since `offset`. */
export interface Changes {
  ids: string[];
  offset: number;
  /** The log was started afresh since `offset`: look at every job folder once. */
  reset: boolean;
}

/**
 * The state directory: one folder per job, and a log of changes shared by every server on it.
 *   jobs/<id>/job.json       metadata, replaced atomically
 *   jobs/<id>/owner.<N>      the job's Nth owner ({pid, start}); created exclusively, so of two
 *                            servers taking a job over at once exactly one succeeds
 *   jobs/<id>/inputs.jsonl   one task input per line, written once (atomically) at submit
 *   jobs/<id>/results.jsonl  one finished task per line, appended; a torn last line is ignored
 *   jobs/<id>/runs.log       one line per task start (its index): attempts count every run
 *   jobs/<id>/out/           full outputs named by task index
 *   changes.log              `<job id>` per change of any job folder, appended by every server: how
 *                            the others notice new jobs and new owners without reading every folder
 * The store is the source of truth for finished work; the engine keeps only what runs in memory.
 */
export class JobStore {
  readonly jobsDir: string;
  private readonly changesFile: string;
  private readonly log: Logger;
  private readonly appender = new Appender();
  private readonly metaWrites = new Set<Promise<void>>();
  private readonly lastMetaWrite = new Map<string, Promise<void>>();
  /** Parsed results of the jobs read most recently (least recently used first); bounded. */
  private readonly resultCache = new Map<string, ResultCache>();
  /** One read at a time per job: concurrent collects must not parse the same bytes twice. */
  private readonly reads = new Map<string, Promise<unknown>>();

  constructor(stateDir: string, log: Logger) {
    this.jobsDir = path.join(stateDir, 'jobs');
    this.changesFile = path.join(stateDir, 'changes.log');
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
    // Readers that followed the old log see it shrink and look at every folder once.
    const size = await stat(this.changesFile).then(
      (s) => s.size,
      () => 0,
    );
    if (size > CHANGES_ROTATE_BYTES) await rename(this.changesFile, `${this.changesFile}.old`).catch(() => undefined);
  }

  /** A new job's folder, its first owner when given, and job.json last (a folder without it is a submit cut short). */
  async createJob(meta: JobMeta, inputs: readonly unknown[], owner?: Omit<Claim, 'generation'>): Promise<void> {
    const dir = this.jobDir(meta.id);
    // Serialized before the folder exists: what cannot be stored leaves nothing behind.
    const inputsText = inputs.map((i) => JSON.stringify(i ?? null)).join('\n') + '\n';
    const metaText = JSON.stringify(meta, null, 2);
    await mkdir(path.join(dir, 'out'), { recursive: true, mode: 0o700 });
    try {
      await writeFileAtomic(path.join(dir, 'inputs.jsonl'), inputsText);
      await writeFileAtomic(path.join(dir, 'results.jsonl'), '');
      if (owner) await writeFile(path.join(dir, 'owner.1'), JSON.stringify(owner), { flag: 'wx', mode: 0o600 });
      await writeFileAtomic(path.join(dir, 'job.json'), metaText);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    await this.noteChange(meta.id);
  }

  async readMeta(id: string): Promise<JobMeta> {
    return JSON.parse(await readFile(path.join(this.jobDir(id), 'job.json'), 'utf8')) as JobMeta;
  }

  writeMeta(meta: JobMeta): Promise<void> {
    const text = JSON.stringify(meta, null, 2);
    // One write at a time per job, in call order: an earlier snapshot must never land last.
    const previous = this.lastMetaWrite.get(meta.id) ?? Promise.resolve();
    const write = previous.then(async () => {
      await writeFileAtomic(path.join(this.jobDir(meta.id), 'job.json'), text);
      await this.noteChange(meta.id);
    });
    const settled = write.catch(() => undefined);
    this.lastMetaWrite.set(meta.id, settled);
    void settled.then(() => {
      if (this.lastMetaWrite.get(meta.id) === settled) this.lastMetaWrite.delete(meta.id);
    });
    // flush() waits for it too: a job counts as finished before its end is on disk.
    this.metaWrites.add(write);
    void write.finally(() => this.metaWrites.delete(write)).catch(() => undefined);
    return write;
  }

  /** The job's latest owner, or undefined for a job from before owners were recorded. */
  async readClaim(jobId: string): Promise<Claim | undefined> {
    const names = await readdir(this.jobDir(jobId)).catch(() => []);
    let generation = 0;
    for (const name of names) {
      const match = /^owner\.(\d+)$/.exec(name);
      if (match) generation = Math.max(generation, Number(match[1]));
    }
    if (generation === 0) return undefined;
    try {
      const owner = JSON.parse(await readFile(path.join(this.jobDir(jobId), `owner.${generation}`), 'utf8')) as Omit<
        Claim,
        'generation'
      >;
      return { ...owner, generation };
    } catch {
      // Being written by its new owner (created empty, then filled): read again later.
      return { generation, pid: -1 };
    }
  }

  /**
   * Takes generation `claim.generation` of a job's ownership. Exclusive: false when another server
   * took that generation first. The previous generation's file goes (only the latest counts).
   */
  async writeClaim(jobId: string, claim: Claim): Promise<boolean> {
    const { generation, ...owner } = claim;
    try {
      await writeFile(path.join(this.jobDir(jobId), `owner.${generation}`), JSON.stringify(owner), {
        flag: 'wx',
        mode: 0o600,
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    await unlink(path.join(this.jobDir(jobId), `owner.${generation - 1}`)).catch(() => undefined);
    await this.noteChange(jobId);
    return true;
  }

  /** Records that a job's folder changed, for the other servers on this state directory. */
  private async noteChange(jobId: string): Promise<void> {
    await this.appender
      .append(this.changesFile, [jobId])
      .catch((error: unknown) => this.log.warn(`could not note a change of ${jobId}: ${String(error)}`));
  }

  /**
   * The jobs changed since `offset` (0: from the start), and where to read next time. Synchronous
   * on purpose: it runs on every list and collect, and mostly finds nothing new; a stat and a small
   * read cost microseconds, while each await costs a turn of an event loop that a busy pool keeps
   * long (see ScriptPool.turnToSpawn).
   */
  readChanges(offset: number): Changes {
    const size = statSync(this.changesFile, { throwIfNoEntry: false })?.size ?? 0;
    if (size < offset) return { ids: [], offset: 0, reset: true };
    if (size === offset) return { ids: [], offset, reset: false };
    const text = readRange(this.changesFile, offset, size - offset).toString('utf8');
    // Only whole lines: the rest is still being written.
    const end = text.lastIndexOf('\n') + 1;
    const ids = [
      ...new Set(
        text
          .slice(0, end)
          .split('\n')
          .filter((id) => JobStore.isJobId(id)),
      ),
    ];
    return { ids, offset: offset + Buffer.byteLength(text.slice(0, end)), reset: false };
  }

  /** How far the change log goes now (a server starting reads every folder, then follows from here). */
  changesEnd(): number {
    return statSync(this.changesFile, { throwIfNoEntry: false })?.size ?? 0;
  }

  /** One write for many records (cancelling 10,000 queued tasks is one append, not 10,000). */
  async appendResults(jobId: string, records: readonly TaskRecord[]): Promise<void> {
    try {
      // Kept open: only the job's owner appends, and nothing replaces the file.
      await this.appender.append(
        path.join(this.jobDir(jobId), 'results.jsonl'),
        records.map((r) => JSON.stringify(r)),
        true,
      );
    } catch (error) {
      this.log.error(`could not record ${records.length} task(s) of ${jobId}: ${String(error)}`);
      throw error;
    }
  }

  appendResult(jobId: string, record: TaskRecord): Promise<void> {
    return this.appendResults(jobId, [record]);
  }

  /** Notes that a task starts a run (attempts count every run, even one cut off by a crash). */
  appendRun(jobId: string, index: number): Promise<void> {
    return this.appender.append(path.join(this.jobDir(jobId), 'runs.log'), [String(index)], true);
  }

  /** How many runs each task has started, by index (missing: none). */
  async readRuns(jobId: string): Promise<Map<number, number>> {
    const text = await readFile(path.join(this.jobDir(jobId), 'runs.log'), 'utf8').catch(() => '');
    const runs = new Map<number, number>();
    // The last piece is empty or torn (it may be the start of a longer index): not counted.
    for (const line of text.split('\n').slice(0, -1)) {
      if (!/^\d+$/.test(line)) continue;
      const index = Number(line);
      runs.set(index, (runs.get(index) ?? 0) + 1);
    }
    return runs;
  }

  /** Resolves once every append queued so far (of one job, or all) has reached its file. */
  async flush(jobId?: string): Promise<void> {
    await this.appender.flush(jobId === undefined ? '' : this.jobDir(jobId));
    await Promise.allSettled([...this.metaWrites]);
  }

  async readInputs(jobId: string): Promise<unknown[]> {
    const text = await readFile(path.join(this.jobDir(jobId), 'inputs.jsonl'), 'utf8');
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as unknown);
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
    // A stat, and a read of what is new when that is small, without a turn of the event loop each
    // (see readChanges); a large backlog is read off the loop.
    const size = statSync(file, { throwIfNoEntry: false })?.size;
    if (size === undefined) return cached.records;
    if (size < cached.bytes) {
      cached.bytes = 0;
      cached.records = [];
      cached.partial = '';
    }
    if (size === cached.bytes) return cached.records;
    const length = size - cached.bytes;
    const buffer =
      length <= SYNC_READ_BYTES
        ? readRange(file, cached.bytes, length)
        : await readRangeAsync(file, cached.bytes, length);
    cached.bytes += buffer.length;
    const text = cached.partial + buffer.toString('utf8');
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
        this.appender.release(path.join(this.jobsDir, name) + path.sep);
        await rm(path.join(this.jobsDir, name), { recursive: true, force: true });
      }
    }
    return metas.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** The bytes of every file in a job's folder (0 when it is gone). */
  jobBytes(jobId: string): Promise<number> {
    return folderBytes(this.jobDir(jobId));
  }

  async removeJob(jobId: string): Promise<void> {
    this.forget(jobId);
    this.appender.release(this.jobDir(jobId) + path.sep);
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

function readRange(file: string, position: number, length: number): Buffer {
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

async function folderBytes(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await folderBytes(full);
    else if (entry.isFile())
      total += await stat(full).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}
