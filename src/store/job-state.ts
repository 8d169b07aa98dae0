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

/** What a reader finds of a job's tasks on disk. */
export interface TasksOnDisk {
  /** Every record in the order written (a task run again has one per attempt). */
  records: readonly TaskRecord[];
  /** Each task's latest record. */
  latest: ReadonlyMap<number, TaskRecord>;
  /** Runs started, by task (runs.log; StateReader.readRuns). */
  runs?: ReadonlyMap<number, number>;
  /** Times a resume queued each task again over its record (requeued.log; StateReader.readRequeued). */
  requeued?: ReadonlyMap<number, number>;
}

/** A job's tasks as a reader that runs none of them counts them (see stateOnDisk). */
export interface JobOnDisk {
  state: JobState;
  counts: JobCounts;
  /** Tasks counted as running. */
  running: ReadonlySet<number>;
  /** Tasks without a record for their latest queueing: pending (or interrupted), whatever a record says. */
  unfinished: ReadonlySet<number>;
}

/**
 * Tasks a resume queued again over their record that have no newer one yet: by the records of
 * each, one more than its lines in requeued.log are due.
 */
export function requeuedUnfinished(
  records: readonly TaskRecord[],
  requeued: ReadonlyMap<number, number> | undefined,
): Set<number> {
  const unfinished = new Set<number>();
  if (!requeued || requeued.size === 0) return unfinished;
  const recorded = new Map<number, number>();
  for (const record of records)
    if (requeued.has(record.index)) recorded.set(record.index, (recorded.get(record.index) ?? 0) + 1);
  for (const [index, times] of requeued) if ((recorded.get(index) ?? 0) <= times) unfinished.add(index);
  return unfinished;
}

/**
 * A job as its files show it to a reader that runs none of it (the dashboard, `monitor-mcp jobs`).
 * A task is finished once it has a record, and one more for each time a resume queued it again
 * (requeued.log). An unfinished task is interrupted unless a live server still runs the job
 * (`ownerRunsIt`); while one does, the task runs when a run of it started (runs.log) and is not
 * recorded yet, and is queued otherwise. Running is bounded by `maxRunning` (the job's concurrency
 * unless a batching pool says more): the log keeps the starts of runs a crash cut off, whose tasks
 * may wait in the queue again now.
 */
export function stateOnDisk(
  meta: Pick<JobMeta, 'taskCount' | 'cancelledAt' | 'concurrency'>,
  disk: TasksOnDisk,
  ownerRunsIt: boolean,
  maxRunning = meta.concurrency,
): JobOnDisk {
  const counts: JobCounts = {
    total: meta.taskCount,
    queued: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
    interrupted: 0,
  };
  const unfinished = requeuedUnfinished(disk.records, disk.requeued);
  for (const record of disk.latest.values())
    if (record.index >= 0 && record.index < meta.taskCount && !unfinished.has(record.index)) counts[record.state]++;
  for (const index of unfinished) if (index < 0 || index >= meta.taskCount) unfinished.delete(index);
  for (let index = 0; index < meta.taskCount; index++) if (!disk.latest.has(index)) unfinished.add(index);
  const running = new Set<number>();
  if (!ownerRunsIt) {
    counts.interrupted = unfinished.size;
    return { state: deriveState(counts, meta), counts, running, unfinished };
  }
  for (const [index, started] of disk.runs ?? []) {
    if (running.size >= Math.max(0, maxRunning)) break;
    if (unfinished.has(index) && started > (disk.latest.get(index)?.attempt ?? 0)) running.add(index);
  }
  counts.running = running.size;
  counts.queued = unfinished.size - running.size;
  return { state: deriveState(counts, meta), counts, running, unfinished };
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
