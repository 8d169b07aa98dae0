import { setTimeout as sleep } from 'node:timers/promises';
import { MonitorError } from '../errors.js';
import { withCurrentOwner } from '../store/job-state.js';
import { StateReader } from '../store/reader.js';
import { type Claim, type DamagedJob, DamagedRecordError } from '../store/records.js';
import type { EngineContext } from './context.js';
import type { Job } from './job.js';
import { batchLimit } from './scheduler.js';
import type { JobMeta, Ownership } from './types.js';

/** How often a waiter re-reads jobs that another server runs (they change only on disk). */
export const FOREIGN_POLL_MS = 500;

/**
 * Which server runs a job, when several share a state directory (one per client session). A job
 * has exactly one owner at a time: the server that took its latest generation (an owner claim,
 * created exclusively, so of two servers taking a job over at once one wins). Jobs of another live
 * server are followed from disk, read-only; once that server is gone what it left unfinished
 * counts as interrupted, and a server that resumes it takes the next generation.
 */
export class OtherServers {
  private readonly ctx: EngineContext;
  private readonly ownership: Ownership | undefined;
  /** Makes the Job of metadata found on disk (linked into its pipeline). */
  private readonly newJob: (meta: JobMeta) => Job;
  /** How far this server has read the state directory's change log. */
  private changesOffset = 0;
  /** Jobs found damaged, by id: quarantined by this server or another, or shown so while another live server owns them. */
  readonly damaged = new Map<string, DamagedJob>();

  /** Without `ownership` this server owns everything (one server, or tests). */
  constructor(ctx: EngineContext, ownership: Ownership | undefined, newJob: (meta: JobMeta) => Job) {
    this.ctx = ctx;
    this.ownership = ownership;
    this.newJob = newJob;
  }

  /** This server as an owner (what a new job's first generation records). */
  get me(): { pid: number; start?: string } | undefined {
    if (!this.ownership) return undefined;
    return this.ownership.startToken === undefined
      ? { pid: this.ownership.pid }
      : { pid: this.ownership.pid, start: this.ownership.startToken };
  }

  /** Names this server as the job's owner (its `generation`th) in its metadata (the caller writes it). */
  stamp(meta: JobMeta, generation: number): void {
    if (!this.ownership) return;
    meta.ownerPid = this.ownership.pid;
    meta.ownerGeneration = generation;
    if (this.ownership.startToken !== undefined) meta.ownerStart = this.ownership.startToken;
    else delete meta.ownerStart;
  }

  /** Every job folder is read now (on start): from here on, only what the change log names. */
  startFollowing(): void {
    this.changesOffset = this.ctx.store.changesEnd();
  }

  /**
   * Brings in what other servers on the state directory did: the jobs they submitted or took over
   * (from the change log, so the cost does not grow with the number of old jobs), and the progress
   * of the jobs they run (all of them, or those of `jobIds`).
   */
  async refresh(jobIds?: readonly string[]): Promise<void> {
    const { store, jobs } = this.ctx;
    const changes = store.readChanges(this.changesOffset);
    this.changesOffset = changes.offset;
    const changed = new Set(changes.reset ? (await store.loadAllReadOnly()).map((meta) => meta.id) : changes.ids);
    for (const id of new Set([...changed, ...(jobIds ?? [])])) {
      if (!StateReader.isJobId(id)) continue;
      const known = jobs.get(id);
      if (known) {
        // Quarantined by the server that took it over: damaged here too.
        const note = changed.has(id) && !known.owned ? await store.damagedNote(id) : undefined;
        if (note) await this.quarantine(note);
        else if (changed.has(id)) await this.guarded(id, () => this.reconsider(known));
        continue;
      }
      const meta = await this.readNew(id);
      if (meta) await this.adoptOrQuarantine(meta);
    }
    const followed = jobIds === undefined ? [...jobs.values()] : jobIds.map((id) => jobs.get(id));
    // Their metadata changes only with a line in the change log; their results file is looked at.
    for (const job of followed)
      if (job?.foreign) await this.guarded(job.id, () => this.follow(job, changed.has(job.id)));
  }

  /** Runs `act` on a job found on disk; a file of it found damaged costs that job alone (see quarantine). */
  private async guarded(id: string, act: () => Promise<void>): Promise<void> {
    try {
      await act();
    } catch (error) {
      if (!(error instanceof DamagedRecordError)) throw error;
      await this.quarantine({ id, path: error.file, reason: error.reason });
    }
  }

  /**
   * Re-reads, every FOREIGN_POLL_MS, those of these jobs that other servers run (they change only
   * on disk), calling `changed` after each look; returns how to stop.
   */
  poll(jobIds: readonly string[], changed: () => void): () => void {
    const foreign = jobIds.filter((id) => this.ctx.jobs.get(id)?.foreign);
    if (foreign.length === 0) return () => undefined;
    const timer = setInterval(
      () =>
        void this.refresh(foreign).then(
          () => changed(),
          () => undefined,
        ),
      FOREIGN_POLL_MS,
    );
    return () => clearInterval(timer);
  }

  /** Takes a job found on disk into memory; true when it had tasks cut off by a dead process. */
  async adopt(meta: JobMeta): Promise<boolean> {
    const job = this.newJob(meta);
    this.ctx.jobs.set(meta.id, job);
    if (this.ownedElsewhere(meta)) {
      job.foreign = true;
      await this.follow(job);
      return false;
    }
    await this.applyNewRecords(job);
    return this.interrupt(job);
  }

  /** Brings a job another server runs up to date before acting on it: its owner may be gone, or have finished it. */
  async catchUp(job: Job): Promise<void> {
    if (job.foreign) await this.follow(job);
  }

  /** adopt(), but a job whose files fail on reading is quarantined (see quarantine) instead; never throws for it. */
  async adoptOrQuarantine(meta: JobMeta): Promise<boolean> {
    try {
      return await this.adopt(meta);
    } catch (error) {
      if (!(error instanceof DamagedRecordError)) throw error;
      await this.quarantine({ id: meta.id, path: error.file, reason: error.reason });
      return false;
    }
  }

  /**
   * A damaged job: out of the jobs, into `damaged`. Quarantined on disk (see JobStore.quarantine)
   * unless it already is or another live server owns it: only a server about to own a job moves
   * its files; readers (and this server, for another's job) only show it as damaged.
   */
  async quarantine(found: DamagedJob): Promise<DamagedJob> {
    this.ctx.jobs.delete(found.id);
    const leave = found.at !== undefined || (await this.ownedByOtherLive(found.id));
    const shown = leave ? found : await this.ctx.store.quarantine(found);
    this.damaged.set(found.id, shown);
    return shown;
  }

  /**
   * Runs `act` on a job; a file of it found damaged on the way (its inputs, say) quarantines the
   * job (see quarantine) and answers JOB_DAMAGED instead.
   */
  async damagedCosts<T>(job: Job, act: () => Promise<T>): Promise<T> {
    try {
      return await act();
    } catch (error) {
      if (!(error instanceof DamagedRecordError)) throw error;
      job.owned = false;
      this.ctx.scheduler.remove(job);
      const damaged = await this.quarantine({ id: job.id, path: error.file, reason: error.reason });
      this.ctx.emit();
      throw damagedJobError(damaged, this.ctx.store.jobDir(job.id));
    }
  }

  /** The job's latest claim names another server that still runs. */
  private async ownedByOtherLive(id: string): Promise<boolean> {
    if (!this.ownership) return false;
    const claim = await this.ctx.store.readClaim(id);
    return (
      claim !== undefined &&
      claim.pid > 0 &&
      claim.pid !== this.ownership.pid &&
      this.ownership.isAlive(claim.pid, claim.start)
    );
  }

  /** A job the change log names that this server does not know: its metadata, or undefined (noted when damaged). */
  private async readNew(id: string): Promise<JobMeta | undefined> {
    const note = await this.ctx.store.damagedNote(id);
    if (note) {
      this.damaged.set(id, note);
      return undefined;
    }
    return this.ctx.store.readMeta(id).catch((error: unknown) => {
      if (error instanceof DamagedRecordError) {
        this.ctx.log.warn(`job ${id} is damaged: ${error.message}`);
        this.damaged.set(id, { id, path: error.file, reason: error.reason });
      } else if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.ctx.log.warn(String(error));
      return undefined;
    });
  }

  /**
   * Makes this server the job's owner before it cancels or resumes it: exactly one server owns a
   * job at a time. Returns the ownership generation held; refuses when another live server runs it.
   */
  async own(job: Job): Promise<number> {
    // Running here: this server holds the latest generation until the job finishes.
    if (job.owned) return job.meta.ownerGeneration ?? 0;
    // A job followed from another server: bring it up to date (its owner may be gone now).
    if (job.foreign) await this.follow(job);
    const generation = job.foreign ? undefined : await this.take(job);
    if (generation !== undefined) {
      job.owned = true;
      return generation;
    }
    job.foreign = true;
    await this.follow(job);
    throw new MonitorError(
      'JOB_OWNED_ELSEWHERE',
      `Job ${job.id} is run by another monitor-mcp process (pid ${job.meta.ownerPid ?? '?'}) on the same state directory.`,
      {
        hint: 'Cancel or resume it from the client session that started it (or wait for it to finish); its results are collectable from here.',
      },
    );
  }

  /**
   * Applies the records appended to the job's results file since the last call, and the tasks a
   * resume queued again over their records (unfinished until recorded again).
   */
  async applyNewRecords(job: Job): Promise<void> {
    const records = await this.ctx.store.readResults(job.id);
    for (; job.applied < records.length; job.applied++) {
      const record = records[job.applied];
      if (record) job.apply(record);
    }
    job.countRequeued(await this.ctx.store.readRequeued(job.id));
  }

  /** A job this server does not run changed on disk: another server may have taken it over. */
  private async reconsider(job: Job): Promise<void> {
    if (job.owned || job.foreign) return;
    const meta = await this.readMeta(job.id);
    if (!meta) return;
    job.meta = await this.latest(meta);
    if (this.ownedElsewhere(meta)) {
      job.foreign = true;
      await this.follow(job);
    } else {
      await this.applyNewRecords(job);
    }
  }

  /** Re-reads a job another server runs; once that server is gone, its leftovers are interrupted. */
  private async follow(job: Job, metaChanged = true): Promise<void> {
    if (metaChanged) job.meta = await this.latest((await this.readMeta(job.id)) ?? job.meta);
    await this.applyNewRecords(job);
    if (this.ownedElsewhere(job.meta)) {
      this.showRunning(job, await this.ctx.store.readRuns(job.id));
      return;
    }
    job.foreign = false;
    await this.interrupt(job);
  }

  /**
   * The unfinished tasks of a job another server runs, as its runs log shows them: running when a
   * run started that has no record yet, queued otherwise. At most as many as the job runs at once:
   * the log also keeps the starts of runs a crash cut off, whose tasks may be queued again now.
   */
  private showRunning(job: Job, runs: ReadonlyMap<number, number>): void {
    const pool = this.ctx.scheduler.pool(job.meta.kind);
    const limit = job.meta.concurrency * (pool ? batchLimit(pool, job.meta.options) : 1);
    let running = 0;
    for (const index of job.indicesIn(['queued', 'running', 'interrupted'])) {
      const started = running < limit && (runs.get(index) ?? 0) > job.attemptOf(index);
      if (started) running++;
      job.setState(index, started ? 'running' : 'queued');
    }
  }

  /** Marks what no process runs any more as interrupted, and the job as ended; true when anything was. */
  private async interrupt(job: Job): Promise<boolean> {
    const cut = job.interruptUnfinished();
    if (cut && job.meta.finishedAt === undefined) {
      job.meta.finishedAt = this.ctx.now().toISOString();
      await this.ctx.store.writeMeta(job.meta);
    }
    return cut;
  }

  /** A job's metadata on disk; undefined (said in the log when damaged) when it cannot be read. */
  private async readMeta(id: string): Promise<JobMeta | undefined> {
    return this.ctx.store.readMeta(id).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.ctx.log.warn(String(error));
      return undefined;
    });
  }

  /** The job's metadata as its current owner is about to write it (see withCurrentOwner). */
  private async latest(meta: JobMeta): Promise<JobMeta> {
    if (!this.ownership) return meta;
    return withCurrentOwner(meta, await this.ctx.store.readClaim(meta.id));
  }

  /** True when the metadata names another live server as the owner of this unfinished job. */
  private ownedElsewhere(meta: JobMeta): boolean {
    const owner = meta.ownerPid;
    return (
      meta.finishedAt === undefined &&
      this.ownership !== undefined &&
      owner !== undefined &&
      owner !== this.ownership.pid &&
      this.ownership.isAlive(owner, meta.ownerStart)
    );
  }

  /**
   * Takes the job's next generation, to run it again (resume) or stop it (cancel), and returns
   * it; or returns undefined when another live server runs the job (that server is then named in
   * `job.meta`). A finished job is free to take, even from a live server; two servers taking it
   * at once race for one claim and one wins.
   */
  private async take(job: Job): Promise<number | undefined> {
    const me = this.me;
    if (!me || !this.ownership) return 0;
    for (let round = 0; round < 50; round++) {
      const claim = await this.ctx.store.readClaim(job.id);
      // A job from before owners were recorded: its metadata names the owner.
      const current: Claim | undefined =
        claim ??
        (job.meta.ownerPid === undefined
          ? undefined
          : {
              generation: 0,
              pid: job.meta.ownerPid,
              ...(job.meta.ownerStart === undefined ? {} : { start: job.meta.ownerStart }),
            });
      // Being written by a server that just took it: look again (for a while; a server killed
      // between creating and filling its claim leaves it empty for good, and that owner is gone).
      if (current?.pid === -1 && round < 20) {
        await sleep(10);
        continue;
      }
      const mine = current?.pid === me.pid && current.start === me.start;
      if (current && current.pid !== -1 && !mine && this.ownership.isAlive(current.pid, current.start)) {
        const meta = await this.latest((await this.readMeta(job.id)) ?? job.meta);
        if (meta.finishedAt === undefined) {
          job.meta = meta;
          return undefined;
        }
      }
      const generation = (current?.generation ?? 0) + 1;
      if (await this.ctx.store.writeClaim(job.id, { generation, ...me })) return generation;
    }
    return undefined;
  }
}

/** What a tool answers for a damaged job: which file, why, and what to do. */
export function damagedJobError(damaged: DamagedJob, folder: string): MonitorError {
  const moved = damaged.moved_to ? ` It was moved to ${damaged.moved_to}.` : '';
  return new MonitorError('JOB_DAMAGED', `Job ${damaged.id} is damaged: ${damaged.path}: ${damaged.reason}.${moved}`, {
    hint: `Its results cannot be trusted or resumed. Inspect the folder ${folder}${damaged.moved_to ? ' (damaged.json says what failed)' : ''} and remove it when done; the other jobs are not affected.`,
  });
}
