import { lstatSync } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import { currentOwner } from './job-state.js';
import { StateLayout } from './layout.js';
import {
  type Claim,
  type DamagedJob,
  DamagedRecordError,
  type JobMeta,
  jobMetaSchema,
  type LiveFile,
  liveFileSchema,
  ownerSchema,
  parseRecord,
  type TaskRecord,
} from './records.js';
import { messageOf, readDamagedNote, readOrEmpty, sayOnce } from './damaged.js';
import { readStateFile, readStateRange, STATE_CAPS } from './safe-read.js';
import { ResultsTail } from './tail.js';
import { readTranscript, type TranscriptTail } from './transcript.js';

/** A live file older than this is a server that stopped without removing it (killed). */
export const LIVE_STALE_MS = 5000;

/** Jobs whose folder changed (created, taken over, their metadata rewritten) since `offset`. */
export interface Changes {
  ids: string[];
  offset: number;
  /** The log was started afresh since `offset`: look at every job folder once. */
  reset: boolean;
}

/** The job folders found: those with readable metadata, those without job.json at all, and the damaged. */
export interface JobScan {
  metas: JobMeta[];
  /** Folders with no job.json (yet): a submit being written, or one cut short. */
  missing: string[];
  /** Jobs whose job.json fails (or that were quarantined): shown as damaged, in folder order. */
  damaged: DamagedJob[];
}

export interface StateReaderOptions {
  /** How many jobs' parsed results stay in memory (least recently read go first); default 16. */
  cachedJobs?: number;
}

/**
 * The one reader of the state directory (its layout: layout.ts). The engine (its own jobs and
 * those of other servers), collect_results and later stages through it, the dashboard and
 * `monitor-mcp jobs` all read here. Read-only: JobStore, the writer, builds on it. Everything read
 * is checked against its schema (records.ts): a damaged file or line is reported with its name and
 * skipped, so one bad job never stops a server, the dashboard or the CLI.
 */
export class StateReader {
  readonly layout: StateLayout;
  protected readonly log: Logger;
  private readonly cachedJobs: number;
  /** Says a refused file once (see readOrEmpty), not on every poll. */
  private readonly said: (line: string) => void;
  /** Results of the jobs read most recently (least recently used first); bounded. */
  private readonly tails = new Map<string, ResultsTail>();
  /** One read at a time per job: concurrent collects must not parse the same bytes twice. */
  private readonly reads = new Map<string, Promise<unknown>>();
  /**
   * Metadata by the mtime of its file: a poll over every job re-reads only what changed. Holds the
   * metadata of cached scans only (the engine changes its own copies), and which files are damaged.
   */
  private readonly metas = new Map<string, { version: string; meta?: JobMeta; damaged?: DamagedJob }>();

  constructor(stateDir: string, log: Logger, options: StateReaderOptions = {}) {
    this.layout = new StateLayout(stateDir);
    this.log = log;
    this.cachedJobs = options.cachedJobs ?? 16;
    this.said = sayOnce(log);
  }

  static isJobId(id: string): boolean {
    return StateLayout.isJobId(id);
  }

  get jobsDir(): string {
    return this.layout.jobsDir;
  }

  jobDir(id: string): string {
    return this.layout.jobDir(id);
  }

  outputDir(id: string): string {
    return this.layout.outputDir(id);
  }

  /** The ids of the job folders (whatever they hold). */
  async jobIds(): Promise<string[]> {
    return (await readdir(this.layout.jobsDir).catch(() => [])).filter((name) => StateLayout.isJobId(name));
  }

  /** A job's metadata; throws DamagedRecordError when job.json does not hold one (ENOENT when missing). */
  async readMeta(id: string): Promise<JobMeta> {
    const file = this.layout.metaFile(id);
    const meta = parseRecord(jobMetaSchema, await readStateFile(file, STATE_CAPS.meta), file);
    // Another job's metadata copied into this folder would be taken for that job.
    if (meta.id !== id) throw new DamagedRecordError(file, `it names job ${meta.id.slice(0, 40)}, not ${id}`);
    return meta;
  }

  /** Why a job is damaged when it is known to be (see readDamagedNote). */
  damagedNote(id: string): Promise<DamagedJob | undefined> {
    return readDamagedNote(this.layout, id);
  }

  /**
   * Every job folder: readable metadata, the folders without job.json, and the damaged jobs (said
   * in the log once per version of the file). `cached`: a file unchanged since the last
   * scan is not read again, and its metadata is the same object as then (for readers that change
   * nothing: the dashboard polls every job several times a second).
   */
  async scanJobs(cached = false): Promise<JobScan> {
    const ids = await this.jobIds();
    const metas: JobMeta[] = [];
    const missing: string[] = [];
    const damaged: DamagedJob[] = [];
    for (const id of ids) {
      const meta = await this.metaOnScan(id, cached);
      if (meta === 'missing') missing.push(id);
      else if ('reason' in meta) damaged.push(meta);
      else metas.push(meta);
    }
    // What is cached of jobs gone (removed by their retention time) goes with them.
    const present = new Set(ids);
    for (const id of [...this.metas.keys(), ...this.tails.keys()]) if (!present.has(id)) this.forget(id);
    metas.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    return { metas, missing, damaged };
  }

  /** A job's metadata as scanJobs(true) reads it: undefined when missing or damaged. */
  async knownMeta(id: string): Promise<JobMeta | undefined> {
    const meta = await this.metaOnScan(id, true);
    return meta === 'missing' || 'reason' in meta ? undefined : meta;
  }

  /** A job as scanJobs(true) reads it: its metadata, or why it is damaged; undefined when there is no such job. */
  async jobOrDamaged(id: string): Promise<JobMeta | DamagedJob | undefined> {
    const meta = await this.metaOnScan(id, true);
    return meta === 'missing' ? undefined : meta;
  }

  private async metaOnScan(id: string, cached: boolean): Promise<JobMeta | DamagedJob | 'missing'> {
    const folder = await lstat(this.layout.jobDir(id)).catch(() => undefined);
    if (!folder) return 'missing';
    const info = folder.isDirectory() ? await lstat(this.layout.metaFile(id)).catch(() => undefined) : undefined;
    // The folder's time changes with its entries (a quarantine note, job.json replaced): its note is read again then.
    const version = `${folder.mtimeMs}/${info?.mtimeMs ?? '-'}`;
    const known = this.metas.get(id);
    const unchanged = known?.version === version;
    if (unchanged && known.damaged) return known.damaged;
    if (unchanged && cached && known.meta) return known.meta;
    // A quarantined job stays damaged whatever its folder holds now: a server moved a file of it aside.
    const note = await this.damagedNote(id);
    if (note) {
      this.metas.set(id, { version, damaged: note });
      return note;
    }
    if (!info) return 'missing';
    try {
      const meta = await this.readMeta(id);
      this.metas.set(id, cached ? { version, meta } : { version });
      return meta;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
      // Said once per version of the file, not on every poll.
      const damaged = this.damagedJob(id, error);
      this.metas.set(id, { version, damaged });
      return damaged;
    }
  }

  /** A job whose metadata cannot be read: shown as damaged, said once (per version of the file). */
  protected damagedJob(id: string, error: unknown): DamagedJob {
    const file = error instanceof DamagedRecordError ? error.file : this.layout.metaFile(id);
    const reason = error instanceof DamagedRecordError ? error.reason : messageOf(error);
    this.log.warn(`job ${id} is damaged: ${file}: ${reason}`);
    return { id, path: file, reason };
  }

  /**
   * All finished-task records of a job, in the order they finished. Reads only what was appended
   * since the last call, so polling a 10,000-task job stays cheap.
   */
  async readResults(jobId: string): Promise<readonly TaskRecord[]> {
    return (await this.tail(jobId)).records;
  }

  /** Each task's latest record, by index (read as readResults does). */
  async latestResults(jobId: string): Promise<ReadonlyMap<number, TaskRecord>> {
    return (await this.tail(jobId)).latest;
  }

  private async tail(jobId: string): Promise<ResultsTail> {
    const previous = this.reads.get(jobId) ?? Promise.resolve();
    const next = previous.then(async () => {
      const tail = this.cachedTail(jobId);
      await tail.update();
      return tail;
    });
    const settled = next.catch(() => undefined);
    this.reads.set(jobId, settled);
    void settled.then(() => {
      if (this.reads.get(jobId) === settled) this.reads.delete(jobId);
    });
    return next;
  }

  private cachedTail(jobId: string): ResultsTail {
    let tail = this.tails.get(jobId);
    if (tail) this.tails.delete(jobId);
    else tail = new ResultsTail(this.layout.resultsFile(jobId), (message) => this.log.warn(message));
    this.tails.set(jobId, tail);
    for (const [id] of this.tails) {
      if (this.tails.size <= this.cachedJobs) break;
      if (id !== jobId) this.tails.delete(id);
    }
    return tail;
  }

  /** Drops what is cached of a job (it was removed). */
  forget(jobId: string): void {
    this.tails.delete(jobId);
    this.metas.delete(jobId);
  }

  /** The task inputs of a job, as submitted; throws DamagedRecordError on a line that is not JSON. */
  async readInputs(jobId: string): Promise<unknown[]> {
    const file = this.layout.inputsFile(jobId);
    const lines = (await readStateFile(file, STATE_CAPS.inputs)).split('\n');
    const inputs: unknown[] = [];
    lines.forEach((line, at) => {
      if (line.length === 0) return;
      try {
        inputs.push(JSON.parse(line) as unknown);
      } catch (error) {
        throw new DamagedRecordError(file, `not JSON (${String(error)})`, at + 1);
      }
    });
    return inputs;
  }

  /** How many runs each task has started, by index (missing: none). */
  async readRuns(jobId: string): Promise<Map<number, number>> {
    const file = this.layout.runsFile(jobId);
    // Only counts of attempts come from it: a damaged one costs those, said in the log.
    const text = await readOrEmpty(file, STATE_CAPS.runs, this.said);
    const runs = new Map<number, number>();
    // The last piece is empty or torn (it may be the start of a longer index): not counted.
    for (const line of text.split('\n').slice(0, -1)) {
      if (!/^\d+$/.test(line)) continue;
      const index = Number(line);
      runs.set(index, (runs.get(index) ?? 0) + 1);
    }
    return runs;
  }

  /**
   * How many times a resume queued each task again over its record (requeued.log), by index: a task
   * is unfinished until it has one record more than that. A file that is no small regular file is
   * named in the log and read as none.
   */
  async readRequeued(jobId: string): Promise<Map<number, number>> {
    const file = this.layout.requeuedFile(jobId);
    const text = await readStateFile(file, STATE_CAPS.runs).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn(`${file} not read: ${messageOf(error)}`);
      return '';
    });
    return countIndices(text);
  }

  /**
   * The job's latest owner, or undefined for a job from before owners were recorded. pid -1: the
   * claim is being written by its new owner (created empty, then filled), or is damaged: read
   * again later (see Owners.take, which gives up on it after a while).
   */
  async readClaim(jobId: string): Promise<Claim | undefined> {
    const names = await readdir(this.layout.jobDir(jobId)).catch(() => []);
    let generation = 0;
    for (const name of names) generation = Math.max(generation, StateLayout.ownerGeneration(name) ?? 0);
    if (generation === 0) return undefined;
    const file = this.layout.ownerFile(jobId, generation);
    const text = await readOrEmpty(file, STATE_CAPS.owner, this.said);
    if (text === '') return { generation, pid: -1 };
    try {
      return { ...parseRecord(ownerSchema, text, file), generation };
    } catch (error) {
      this.said(error instanceof Error ? error.message : String(error));
      return { generation, pid: -1 };
    }
  }

  /** The server that owns a job now (see currentOwner). */
  async ownerOf(meta: JobMeta): Promise<Claim | undefined> {
    return currentOwner(meta, await this.readClaim(meta.id));
  }

  /**
   * The jobs changed since `offset` (0: from the start), and where to read next time. Synchronous
   * on purpose: it runs on every list and collect, and mostly finds nothing new; a stat and a small
   * read cost microseconds, while each await costs a turn of an event loop that a busy pool keeps
   * long (see ScriptPool.turnToSpawn).
   */
  readChanges(offset: number): Changes {
    const file = this.layout.changesFile;
    const info = lstatSync(file, { throwIfNoEntry: false });
    // Not a regular file (a FIFO, a symlink): never opened; a server starting moves it aside.
    if (info && !info.isFile()) return { ids: [], offset, reset: false };
    const size = info?.size ?? 0;
    if (size < offset) return { ids: [], offset: 0, reset: true };
    if (size === offset) return { ids: [], offset, reset: false };
    // Far behind (or a huge file written into its place): look at every folder once instead.
    if (size - offset > STATE_CAPS.chunk) return { ids: [], offset: size, reset: true };
    let text: string;
    try {
      text = readStateRange(file, offset, size - offset).toString('utf8');
    } catch (error) {
      this.log.warn(`${file} not read: ${messageOf(error)}`);
      return { ids: [], offset, reset: false };
    }
    // Only whole lines: the rest is still being written.
    const end = text.lastIndexOf('\n') + 1;
    const ids = [
      ...new Set(
        text
          .slice(0, end)
          .split('\n')
          .filter((id) => StateLayout.isJobId(id)),
      ),
    ];
    return { ids, offset: offset + Buffer.byteLength(text.slice(0, end)), reset: false };
  }

  /** How far the change log goes now (a server starting reads every folder, then follows from here). */
  changesEnd(): number {
    const info = lstatSync(this.layout.changesFile, { throwIfNoEntry: false });
    return info?.isFile() ? info.size : 0;
  }

  /** The live files of the servers that beat recently (a killed server's file goes stale). */
  async liveServers(now: number): Promise<LiveFile[]> {
    const names = (await readdir(this.layout.liveDir).catch(() => [])).filter((name) => StateLayout.isLiveFile(name));
    const live: LiveFile[] = [];
    for (const name of names) {
      const file = path.join(this.layout.liveDir, name);
      // Renamed into place, so never half written: one that does not parse is skipped quietly (it is replaced within a second).
      const server = await readStateFile(file, STATE_CAPS.live)
        .then((text) => parseRecord(liveFileSchema, text, file))
        .catch(() => undefined);
      if (server && now - Date.parse(server.heartbeat_at) <= LIVE_STALE_MS) live.push(server);
    }
    return live;
  }

  /** The end of a task's transcript (see readTranscript): only a regular file inside the job's output folder is read. */
  transcript(jobId: string, file: string): Promise<TranscriptTail> {
    return readTranscript(this.layout.outputDir(jobId), file);
  }

  /** The bytes of every file in a job's folder (0 when it is gone). */
  jobBytes(jobId: string): Promise<number> {
    return folderBytes(this.layout.jobDir(jobId));
  }
}

/** How often each index appears, one a line; the last piece is empty or torn (the start of a longer index) and not counted. */
function countIndices(text: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const line of text.split('\n').slice(0, -1)) {
    if (!/^\d{1,9}$/.test(line)) continue;
    const index = Number(line);
    counts.set(index, (counts.get(index) ?? 0) + 1);
  }
  return counts;
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
