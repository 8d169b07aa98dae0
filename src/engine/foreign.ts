import { setTimeout as sleep } from 'node:timers/promises';
import type { Claim, JobStore } from '../store/store.js';
import type { Job } from './job.js';
import type { JobMeta, Ownership } from './types.js';

/** How often a waiter re-reads jobs that another server runs (they change only on disk). */
export const FOREIGN_POLL_MS = 500;

/**
 * Which server runs a job, when several share a state directory (one per client session). A job
 * has exactly one owner at a time: the server that took its latest generation (`owner.<N>`,
 * created exclusively, so of two servers taking a job over at once one wins). Jobs of another live
 * server are followed from disk, read-only; once that server is gone what it left unfinished
 * counts as interrupted, and a server that resumes it takes the next generation.
 */
export class Owners {
  private readonly ownership: Ownership | undefined;
  private readonly store: JobStore;

  /** Without `ownership` this server owns everything (one server, or tests). */
  constructor(store: JobStore, ownership: Ownership | undefined) {
    this.store = store;
    this.ownership = ownership;
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

  /**
   * The job's metadata as its owner is about to write it: a claim newer than the metadata means a
   * server has just taken the job over (it rewrites job.json next), so that server runs it now.
   */
  async latest(meta: JobMeta): Promise<JobMeta> {
    if (!this.ownership) return meta;
    const claim = await this.store.readClaim(meta.id);
    if (!claim || claim.pid === -1 || claim.generation <= (meta.ownerGeneration ?? 0)) return meta;
    const taken: JobMeta = { ...meta, ownerPid: claim.pid, ownerGeneration: claim.generation };
    delete taken.finishedAt;
    delete taken.cancelledAt;
    if (claim.start === undefined) delete taken.ownerStart;
    else taken.ownerStart = claim.start;
    return taken;
  }

  /** True when the metadata names another live server as the owner of this unfinished job. */
  ownedElsewhere(meta: JobMeta): boolean {
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
   * Makes this server the job's owner, to run it again (resume) or stop it (cancel): takes the
   * job's next generation and returns it, or returns undefined when another live server runs the
   * job (that server is then named in `job.meta`). A finished job is free to take, even from a live
   * server; two servers taking it at once race for one `owner.<N>` file and one wins.
   */
  async take(job: Job): Promise<number | undefined> {
    const me = this.me;
    if (!me || !this.ownership) return 0;
    for (let round = 0; round < 50; round++) {
      const claim = await this.store.readClaim(job.id);
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
        const meta = await this.latest(await this.store.readMeta(job.id).catch(() => job.meta));
        if (meta.finishedAt === undefined) {
          job.meta = meta;
          return undefined;
        }
      }
      const generation = (current?.generation ?? 0) + 1;
      if (await this.store.writeClaim(job.id, { generation, ...me })) return generation;
    }
    return undefined;
  }

  /**
   * Brings a job another server runs up to date from disk. Returns true while that server still
   * runs it, false once it finished or its server is gone (the caller then sees what is left).
   */
  async follow(job: Job, metaChanged = true): Promise<boolean> {
    if (metaChanged) job.meta = await this.latest(await this.store.readMeta(job.id).catch(() => job.meta));
    // Tasks with no record yet are queued or running over there: shown as running.
    for (const index of job.indicesIn(['queued', 'interrupted'])) job.setState(index, 'running');
    await applyNewRecords(this.store, job);
    return this.ownedElsewhere(job.meta);
  }
}

/** Applies the records appended to the job's results file since the last call. */
export async function applyNewRecords(store: JobStore, job: Job): Promise<void> {
  const records = await store.readResults(job.id);
  for (; job.applied < records.length; job.applied++) {
    const record = records[job.applied];
    if (record) job.apply(record);
  }
}
