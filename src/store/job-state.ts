import type { Claim, JobCounts, JobMeta, JobState, TaskRecord } from './records.js';

/*
 * What a job's files mean, derived the same way for the engine (which runs jobs) and for the
 * readers that run none (the dashboard, `monitor-mcp jobs`).
 */

/** A job's state from how many of its tasks are in each state. */
export function deriveState(counts: JobCounts, meta: Pick<JobMeta, 'cancelledAt'>): JobState {
  if (counts.running > 0) return 'running';
  if (counts.queued > 0) return counts.queued === counts.total ? 'queued' : 'running';
  if (counts.interrupted > 0) return 'interrupted';
  if (meta.cancelledAt !== undefined || counts.cancelled > 0) return 'cancelled';
  if (counts.failed > 0) return 'failed';
  return 'succeeded';
}

/**
 * A job as its files show it to a reader that runs none of it: tasks without a record are pending,
 * and interrupted unless a live server still runs the job (`ownerRunsIt`). While it does, the job
 * is queued until its first result and running after (also while resumed tasks run again over the
 * records of their earlier attempts).
 */
export function stateOnDisk(
  meta: Pick<JobMeta, 'taskCount' | 'cancelledAt'>,
  latest: ReadonlyMap<number, TaskRecord>,
  ownerRunsIt: boolean,
): { state: JobState; counts: JobCounts } {
  const counts: JobCounts = {
    total: meta.taskCount,
    queued: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
    interrupted: 0,
  };
  for (const record of latest.values()) counts[record.state]++;
  const pending = meta.taskCount - latest.size;
  if (ownerRunsIt) {
    counts.running = pending;
    return { state: latest.size === 0 ? 'queued' : 'running', counts };
  }
  counts.interrupted = pending;
  return { state: deriveState(counts, meta), counts };
}

/**
 * The server that owns a job now: its latest claim (`owner.<N>`), unless the metadata was written
 * by that generation or a later one, or the claim is still being written (pid -1); a job from
 * before claims were recorded names its owner in its metadata alone.
 */
export function currentOwner(
  meta: Pick<JobMeta, 'ownerPid' | 'ownerStart' | 'ownerGeneration'>,
  claim: Claim | undefined,
): Claim | undefined {
  const generation = meta.ownerGeneration ?? 0;
  if (claim && claim.pid > 0 && claim.generation >= generation) return claim;
  if (meta.ownerPid === undefined) return undefined;
  return meta.ownerStart === undefined
    ? { generation, pid: meta.ownerPid }
    : { generation, pid: meta.ownerPid, start: meta.ownerStart };
}

/**
 * The job's metadata as its owner is about to write it: a claim newer than the metadata means a
 * server has just taken the job over (it rewrites job.json next), so that server runs it now and
 * the job is no longer finished.
 */
export function withCurrentOwner(meta: JobMeta, claim: Claim | undefined): JobMeta {
  const owner = currentOwner(meta, claim);
  if (!owner || owner.generation <= (meta.ownerGeneration ?? 0)) return meta;
  const taken: JobMeta = { ...meta, ownerPid: owner.pid, ownerGeneration: owner.generation };
  delete taken.finishedAt;
  delete taken.cancelledAt;
  if (owner.start === undefined) delete taken.ownerStart;
  else taken.ownerStart = owner.start;
  return taken;
}
