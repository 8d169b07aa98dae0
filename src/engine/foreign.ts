import { setTimeout as sleep } from 'node:timers/promises';
import { MonitorError } from '../errors.js';
import { withCurrentOwner } from '../store/job-state.js';
import { StateReader } from '../store/reader.js';
import type { Claim } from '../store/records.js';
import type { EngineContext } from './context.js';
import type { Job } from './job.js';
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
        if (changed.has(id)) await this.reconsider(known);
        continue;
      }
      const meta = await this.readMeta(id);
      if (meta) await this.adopt(meta);
    }
    const followed = jobIds === undefined ? [...jobs.values()] : jobIds.map((id) => jobs.get(id));
    // Their metadata changes only with a line in the change log; their results file is looked at.
    for (const job of followed) if (job?.foreign) await this.follow(job, changed.has(job.id));
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

  /** Applies the records appended to the job's results file since the last call. */
  async applyNewRecords(job: Job): Promise<void> {
    const records = await this.ctx.store.readResults(job.id);
    for (; job.applied < records.length; job.applied++) {
      const record = records[job.applied];
      if (record) job.apply(record);
    }
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
    // Tasks with no record yet are queued or running over there: shown as running.
    for (const index of job.indicesIn(['queued', 'interrupted'])) job.setState(index, 'running');
    await this.applyNewRecords(job);
    if (this.ownedElsewhere(job.meta)) return;
    job.foreign = false;
    await this.interrupt(job);
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
