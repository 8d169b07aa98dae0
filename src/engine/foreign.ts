import type { JobStore } from '../store/store.js';
import type { Job } from './job.js';
import type { JobMeta, Ownership } from './types.js';

/** How often a waiter re-reads jobs that another server runs (they change only on disk). */
export const FOREIGN_POLL_MS = 500;

/**
 * Which server runs a job, when several share a state directory (one per client session). A job
 * carries its owner's pid and start time; jobs of another live server are followed from disk,
 * read-only, and once that server is gone what it left unfinished counts as interrupted.
 */
export class Owners {
  private readonly ownership: Ownership | undefined;
  private readonly store: JobStore;

  /** Without `ownership` every unfinished job found on start counts as interrupted. */
  constructor(store: JobStore, ownership: Ownership | undefined) {
    this.store = store;
    this.ownership = ownership;
  }

  /** Marks this server as the job's owner (in memory; the caller writes the meta). */
  claim(meta: JobMeta): void {
    if (!this.ownership) return;
    meta.ownerPid = this.ownership.pid;
    if (this.ownership.startToken !== undefined) meta.ownerStart = this.ownership.startToken;
    else delete meta.ownerStart;
  }

  /** True when another live server process runs this unfinished job. */
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
   * Brings a job another server runs up to date from disk. Returns true while that server still
   * runs it, false once it finished or its server is gone (the caller then owns what is left).
   */
  async follow(job: Job): Promise<boolean> {
    job.meta = await this.store.readMeta(job.id).catch(() => job.meta);
    // Tasks with no record yet are queued or running over there: shown as running.
    for (const index of job.indicesIn(['queued'])) job.setState(index, 'running');
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
