import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import { Appender } from './appender.js';
import { writeFileAtomic } from './atomic.js';
import { StateLayout } from './layout.js';
import { type JobScan, StateReader } from './reader.js';
import type { Claim, DamagedJob, JobMeta, TaskRecord } from './records.js';

export type { Changes } from './reader.js';
export type { Claim } from './records.js';

/** The change log is started afresh (by a server starting) once it has grown this large. */
const CHANGES_ROTATE_BYTES = 1024 * 1024;
/** A job folder without job.json this old is an abandoned submit, not one being written. */
const ABANDONED_SUBMIT_MS = 10 * 60_000;

/**
 * The state directory as a server writes it (its layout: layout.ts): one folder per job, and a log
 * of changes shared by every server on it. Reads come from StateReader. Crash-safe: small files
 * are replaced atomically, records appended a line at a time (a torn last line is skipped on
 * reading). The store is the source of truth for finished work; the engine keeps only what runs
 * in memory.
 */
export class JobStore extends StateReader {
  private readonly appender = new Appender();
  private readonly metaWrites = new Set<Promise<void>>();
  private readonly lastMetaWrite = new Map<string, Promise<void>>();

  private readonly now: () => Date;

  constructor(stateDir: string, log: Logger, now: () => Date = () => new Date()) {
    super(stateDir, log);
    this.now = now;
  }

  static newJobId(): string {
    // 128 random bits: handles are unguessable, so one client cannot reach another's jobs by guessing.
    return `job_${randomBytes(16).toString('base64url')}`;
  }

  async init(): Promise<void> {
    await mkdir(this.layout.jobsDir, { recursive: true, mode: 0o700 });
    // Readers that followed the old log see it shrink and look at every folder once.
    const file = this.layout.changesFile;
    const info = await lstat(file).catch(() => undefined);
    // A FIFO, a symlink or a folder in its place is never read nor appended to: moved aside, said once.
    if (info && !info.isFile()) await this.moveAside(file, 'it is not a regular file');
    else if (info && info.size > CHANGES_ROTATE_BYTES) await rename(file, `${file}.old`).catch(() => undefined);
  }

  /**
   * Quarantines a damaged job: its failing file is moved aside in its folder (`<name>.damaged-<time>`),
   * a note (damaged.json) says which and why, and one line in the log. Only for a job this server
   * is about to own (at recovery, or a resume or cancel): readers only show it as damaged. From
   * then on every reader shows the job as damaged, and nothing removes it but its user.
   */
  async quarantine(found: DamagedJob): Promise<DamagedJob> {
    const { id } = found;
    const quarantined: DamagedJob = { ...found, at: this.now().toISOString() };
    // A job folder that is no folder (a symlink) is left as it is: nothing is written through it.
    if (path.dirname(found.path) === this.layout.jobDir(id) && (await isFolder(this.layout.jobDir(id)))) {
      const aside = StateLayout.quarantinedName(found.path, this.now());
      const moved = await rename(found.path, aside).then(
        () => true,
        () => false,
      );
      if (moved) quarantined.moved_to = aside;
      const note = { path: found.path, reason: found.reason, moved_to: quarantined.moved_to, at: quarantined.at };
      await writeFileAtomic(this.layout.damagedNoteFile(id), JSON.stringify(note, null, 2)).catch((error: unknown) =>
        this.log.warn(`could not write the quarantine note of ${id}: ${String(error)}`),
      );
    }
    const moved = quarantined.moved_to === undefined ? '' : ` (moved to ${quarantined.moved_to})`;
    this.log.error(`job ${id} quarantined: ${found.path}: ${found.reason}${moved}`);
    this.forget(id);
    this.appender.release(this.layout.jobDir(id) + path.sep);
    await this.noteChange(id);
    return quarantined;
  }

  /** A shared file that is not what it should be, moved aside with a log line. */
  private async moveAside(file: string, reason: string): Promise<void> {
    const aside = StateLayout.quarantinedName(file, this.now());
    await rename(file, aside).then(
      () => this.log.error(`${file} moved to ${aside}: ${reason}`),
      (error: unknown) => this.log.error(`${file}: ${reason}; could not move it aside: ${String(error)}`),
    );
  }

  /** A new job's folder, its first owner when given, and job.json last (a folder without it is a submit cut short). */
  async createJob(meta: JobMeta, inputs: readonly unknown[], owner?: Omit<Claim, 'generation'>): Promise<void> {
    const { layout } = this;
    // Serialized before the folder exists: what cannot be stored leaves nothing behind.
    const inputsText = inputs.map((i) => JSON.stringify(i ?? null)).join('\n') + '\n';
    const metaText = JSON.stringify(meta, null, 2);
    await mkdir(layout.outputDir(meta.id), { recursive: true, mode: 0o700 });
    try {
      await writeFileAtomic(layout.inputsFile(meta.id), inputsText);
      await writeFileAtomic(layout.resultsFile(meta.id), '');
      if (owner) await writeFile(layout.ownerFile(meta.id, 1), JSON.stringify(owner), { flag: 'wx', mode: 0o600 });
      await writeFileAtomic(layout.metaFile(meta.id), metaText);
    } catch (error) {
      await rm(layout.jobDir(meta.id), { recursive: true, force: true });
      throw error;
    }
    await this.noteChange(meta.id);
  }

  writeMeta(meta: JobMeta): Promise<void> {
    const text = JSON.stringify(meta, null, 2);
    // One write at a time per job, in call order: an earlier snapshot must never land last.
    const previous = this.lastMetaWrite.get(meta.id) ?? Promise.resolve();
    const write = previous.then(async () => {
      await writeFileAtomic(this.layout.metaFile(meta.id), text);
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

  /**
   * Takes generation `claim.generation` of a job's ownership. Exclusive: false when another server
   * took that generation first. The previous generation's file goes (only the latest counts).
   */
  async writeClaim(jobId: string, claim: Claim): Promise<boolean> {
    const { generation, ...owner } = claim;
    try {
      await writeFile(this.layout.ownerFile(jobId, generation), JSON.stringify(owner), { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    await unlink(this.layout.ownerFile(jobId, generation - 1)).catch(() => undefined);
    await this.noteChange(jobId);
    return true;
  }

  /** Records that a job's folder changed, for the other servers on this state directory. */
  private async noteChange(jobId: string): Promise<void> {
    await this.appender
      .append(this.layout.changesFile, [jobId])
      .catch((error: unknown) => this.log.warn(`could not note a change of ${jobId}: ${String(error)}`));
  }

  /** One write for many records (cancelling 10,000 queued tasks is one append, not 10,000). */
  async appendResults(jobId: string, records: readonly TaskRecord[]): Promise<void> {
    try {
      // Kept open: only the job's owner appends, and nothing replaces the file.
      await this.appender.append(
        this.layout.resultsFile(jobId),
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
    return this.appender.append(this.layout.runsFile(jobId), [String(index)], true);
  }

  /**
   * Notes that a resume queues these tasks again over their records (see readRequeued): written
   * before the job's metadata says it runs again, so a crash from then on leaves them unfinished.
   */
  appendRequeued(jobId: string, indices: readonly number[]): Promise<void> {
    return this.appender.append(this.layout.requeuedFile(jobId), indices.map(String), true);
  }

  /** Resolves once every append queued so far (of one job, or all) has reached its file. */
  async flush(jobId?: string): Promise<void> {
    await this.appender.flush(jobId === undefined ? '' : this.layout.jobDir(jobId));
    await Promise.allSettled([...this.metaWrites]);
  }

  /**
   * Every job with readable metadata, oldest first, and the damaged ones (left as they are: the
   * caller quarantines those it may). Old folders without job.json (a submit cut short) are
   * removed; a quarantined job's folder is not (it has its note).
   */
  async loadAll(): Promise<JobScan> {
    const scan = await this.scanJobs();
    const { missing } = scan;
    for (const id of missing) {
      // Only old folders: a young one may be a submit another server is writing right now.
      if (!(await isOlderThan(this.layout.jobDir(id), ABANDONED_SUBMIT_MS))) continue;
      this.log.warn(`job folder ${id} has no job.json (a submit cut short?); removing it`);
      await this.removeJob(id);
    }
    return scan;
  }

  /** The same, touching nothing: for readers while a server may own the directory. */
  async loadAllReadOnly(): Promise<JobMeta[]> {
    return (await this.scanJobs()).metas;
  }

  async removeJob(jobId: string): Promise<void> {
    this.forget(jobId);
    this.appender.release(this.layout.jobDir(jobId) + path.sep);
    await rm(this.layout.jobDir(jobId), { recursive: true, force: true });
  }
}

async function isOlderThan(file: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(file)).mtimeMs > ms;
  } catch {
    return false;
  }
}

/** A folder itself, not a symlink to one. */
function isFolder(dir: string): Promise<boolean> {
  return lstat(dir).then(
    (info) => info.isDirectory(),
    () => false,
  );
}
