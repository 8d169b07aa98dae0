import { describe, expect, it } from 'vitest';
import { currentOwner, deriveState, stateOnDisk, withCurrentOwner } from '../../src/store/job-state.js';
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

describe('stateOnDisk', () => {
  it('counts tasks without a record as interrupted once no server runs the job', () => {
    expect(stateOnDisk(meta, latest(record(0, 'succeeded')), false)).toEqual({
      state: 'interrupted',
      counts: { total: 3, queued: 0, running: 0, succeeded: 1, failed: 0, cancelled: 0, interrupted: 2 },
    });
    expect(
      stateOnDisk(meta, latest(record(0, 'succeeded'), record(1, 'failed'), record(2, 'succeeded')), false).state,
    ).toBe('failed');
  });

  it('shows a job its server runs as queued until its first result, then running, also over earlier attempts', () => {
    expect(stateOnDisk(meta, latest(), true).state).toBe('queued');
    expect(stateOnDisk(meta, latest(record(0, 'failed')), true).state).toBe('running');
    // Resumed: every task has a record of an earlier attempt, and runs again.
    expect(stateOnDisk(meta, latest(record(0, 'failed'), record(1, 'failed'), record(2, 'failed')), true).state).toBe(
      'running',
    );
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
