import { describe, expect, it } from 'vitest';
import {
  currentOwner,
  deriveState,
  stateOnDisk,
  type TasksOnDisk,
  withCurrentOwner,
} from '../../src/store/job-state.js';
import type { JobCounts, JobMeta, TaskRecord } from '../../src/store/records.js';

const counts = (fields: Partial<JobCounts>): JobCounts => ({
  total: 4,
  queued: 0,
  running: 0,
  succeeded: 0,
  failed: 0,
  cancelled: 0,
  interrupted: 0,
  ...fields,
});

const record = (index: number, state: TaskRecord['state']): TaskRecord => ({
  index,
  state,
  attempt: 1,
  finishedAt: 't',
});
const latest = (...records: TaskRecord[]): Map<number, TaskRecord> => new Map(records.map((r) => [r.index, r]));

const meta: JobMeta = { id: 'job_x', kind: 'script', createdAt: 't', taskCount: 3, concurrency: 1, options: {} };

describe('deriveState', () => {
  it.each([
    [{ queued: 4 }, 'queued'],
    [{ queued: 2, succeeded: 2 }, 'running'],
    [{ running: 1, interrupted: 3 }, 'running'],
    [{ interrupted: 1, failed: 3 }, 'interrupted'],
    [{ cancelled: 1, failed: 3 }, 'cancelled'],
    [{ failed: 1, succeeded: 3 }, 'failed'],
    [{ succeeded: 4 }, 'succeeded'],
  ] as const)('%o is %s', (fields, state) => {
    expect(deriveState(counts(fields), {})).toBe(state);
  });

  it('counts a job cancelled with nothing left to cancel as cancelled', () => {
    expect(deriveState(counts({ succeeded: 4 }), { cancelledAt: 't' })).toBe('cancelled');
  });
});

/** What a reader finds on disk: these records (in order), and the runs and requeues logged. */
const disk = (
  records: TaskRecord[],
  runs: Record<number, number> = {},
  requeued: Record<number, number> = {},
): TasksOnDisk => ({
  records,
  latest: latest(...records),
  runs: new Map(Object.entries(runs).map(([i, n]) => [Number(i), n])),
  requeued: new Map(Object.entries(requeued).map(([i, n]) => [Number(i), n])),
});

describe('stateOnDisk', () => {
  it('counts tasks without a record as interrupted once no server runs the job', () => {
    expect(stateOnDisk(meta, disk([record(0, 'succeeded')]), false)).toMatchObject({
      state: 'interrupted',
      counts: { total: 3, queued: 0, running: 0, succeeded: 1, failed: 0, cancelled: 0, interrupted: 2 },
    });
    expect(
      stateOnDisk(meta, disk([record(0, 'succeeded'), record(1, 'failed'), record(2, 'succeeded')]), false).state,
    ).toBe('failed');
  });

  it('shows a job its server runs as running from its first start (runs.log), queued before', () => {
    expect(stateOnDisk(meta, disk([]), true)).toMatchObject({ state: 'queued', counts: { queued: 3, running: 0 } });
    const first = stateOnDisk(meta, disk([], { 0: 1 }), true);
    expect(first).toMatchObject({ state: 'running', counts: { queued: 2, running: 1 } });
    expect([...first.running]).toEqual([0]);
    // Recorded: the run is over; the next one has started.
    expect(stateOnDisk(meta, disk([record(0, 'failed')], { 0: 1, 1: 1 }), true)).toMatchObject({
      state: 'running',
      counts: { failed: 1, running: 1, queued: 1 },
    });
  });

  it("never counts more running than the job's concurrency: starts of runs a crash cut off stay in the log", () => {
    const wide = { ...meta, taskCount: 300, concurrency: 2 };
    const runs = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [i, 1]));
    expect(stateOnDisk(wide, disk([], runs), true).counts).toMatchObject({ running: 2, queued: 298 });
    expect(stateOnDisk(wide, disk([], runs), true, 8).counts).toMatchObject({ running: 8, queued: 292 });
  });

  it('counts a task a resume queued again over its record as unfinished until it has a newer one', () => {
    const cancelled = [record(0, 'succeeded'), record(1, 'cancelled'), record(2, 'cancelled')];
    // Resumed with include_cancelled, then its server died: interrupted, not cancelled.
    const crashed = stateOnDisk(meta, disk(cancelled, { 1: 1 }, { 1: 1, 2: 1 }), false);
    expect(crashed).toMatchObject({ state: 'interrupted', counts: { succeeded: 1, cancelled: 0, interrupted: 2 } });
    expect([...crashed.unfinished].sort()).toEqual([1, 2]);
    // While its server runs it: #1 runs again (a second start), #2 waits.
    expect(stateOnDisk(meta, disk(cancelled, { 1: 2 }, { 1: 1, 2: 1 }), true)).toMatchObject({
      state: 'running',
      counts: { succeeded: 1, running: 1, queued: 1, cancelled: 0 },
    });
    // Recorded again: finished as the newer record says.
    const again = [...cancelled, { ...record(1, 'succeeded'), attempt: 2 }, record(2, 'cancelled')];
    expect(stateOnDisk(meta, disk(again, { 1: 2 }, { 1: 1, 2: 1 }), false)).toMatchObject({
      state: 'cancelled',
      counts: { succeeded: 2, cancelled: 1, interrupted: 0 },
    });
  });
});

describe('currentOwner', () => {
  it('is the latest claim, unless the metadata is as new; a claim being written does not count', () => {
    const owned = { ...meta, ownerPid: 10, ownerStart: 'a', ownerGeneration: 1 };
    expect(currentOwner(owned, { generation: 2, pid: 20 })).toEqual({ generation: 2, pid: 20 });
    expect(currentOwner(owned, { generation: 1, pid: 10, start: 'a' })).toEqual({ generation: 1, pid: 10, start: 'a' });
    expect(currentOwner(owned, { generation: 2, pid: -1 })).toEqual({ generation: 1, pid: 10, start: 'a' });
    expect(currentOwner(owned, undefined)).toEqual({ generation: 1, pid: 10, start: 'a' });
    expect(currentOwner(meta, undefined)).toBeUndefined();
  });

  it("gives a job taken over its new owner's metadata, no longer finished", () => {
    const finished = { ...meta, ownerPid: 10, ownerStart: 'a', ownerGeneration: 1, finishedAt: 't', cancelledAt: 't' };
    expect(withCurrentOwner(finished, { generation: 2, pid: 20 })).toEqual({
      ...meta,
      ownerPid: 20,
      ownerGeneration: 2,
    });
    expect(withCurrentOwner(finished, { generation: 1, pid: 10, start: 'a' })).toBe(finished);
  });
});
