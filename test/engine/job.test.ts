import { describe, expect, it } from 'vitest';
import { Job } from '../../src/engine/job.js';
import type { JobMeta, JobTotals } from '../../src/engine/types.js';

const meta = (tasks: number): JobMeta => ({
  id: 'job_x',
  kind: 'k',
  createdAt: '2026-01-01T00:00:00.000Z',
  taskCount: tasks,
  concurrency: 2,
  options: {},
});
const sum: JobTotals<number> = {
  add: (total, value) => (total ?? 0) + ((value as { n?: number }).n ?? 0),
  view: (total, elapsedMs) => ({ fields: { n: total, ms: elapsedMs }, text: `${total} n` }),
};

describe('Job', () => {
  it("counts states, folds each record's data into the kind's totals, and derives the job state", () => {
    const job = new Job(meta(3), sum);
    expect(job.snapshot(Date.parse('2026-01-01T00:00:01Z'))).toMatchObject({
      state: 'queued',
      counts: { queued: 3 },
      elapsedMs: 1000,
    });
    job.setState(0, 'running');
    job.apply({ index: 0, state: 'succeeded', attempt: 1, finishedAt: '', value: { n: 4 } });
    job.apply({ index: 1, state: 'failed', attempt: 1, finishedAt: '', value: { n: 1 } });
    const snapshot = job.snapshot(Date.parse('2026-01-01T00:00:02Z'));
    expect(snapshot).toMatchObject({ state: 'running', counts: { queued: 1, running: 0, succeeded: 1, failed: 1 } });
    expect(snapshot.totals).toEqual({ fields: { n: 5, ms: 2000 }, text: '5 n' });
    expect(job.interruptUnfinished()).toBe(true);
    expect(job.snapshot(0).state).toBe('interrupted');
  });

  it('requeues a resumed task as a new attempt, and ignores a record for a task it does not have', () => {
    const job = new Job(meta(2));
    job.apply({ index: 5, state: 'succeeded', attempt: 1, finishedAt: '' });
    job.apply({ index: 1, state: 'failed', attempt: 1, finishedAt: '' });
    job.enqueue(1, { again: true });
    // A run counts when it starts, not when it is queued.
    expect(job.attemptOf(1)).toBe(1);
    expect(job.indicesIn(['queued'])).toEqual([0, 1]);
    expect(job.takeNext()).toEqual({ index: 1, input: { again: true } });
    expect(job.started(1)).toBe(2);
    job.countRuns(
      new Map([
        [1, 3],
        [9, 1],
      ]),
    );
    expect(job.attemptOf(1)).toBe(3);
    expect(job.hasQueued).toBe(false);
  });
  it('keeps a task a resume queued again over its record unfinished until a newer record, whichever is read first', () => {
    const cancelled = { index: 0, state: 'cancelled' as const, attempt: 1, finishedAt: '' };
    const again = { index: 0, state: 'succeeded' as const, attempt: 2, finishedAt: '' };
    // Loaded from disk: the record, then requeued.log.
    const loaded = new Job(meta(1));
    loaded.apply(cancelled);
    expect(loaded.isRecorded(0)).toBe(true);
    loaded.countRequeued(new Map([[0, 1]]));
    expect([loaded.stateOf(0), loaded.isRecorded(0)]).toEqual(['queued', false]);
    expect(loaded.interruptUnfinished()).toBe(true);
    expect(loaded.snapshot(0)).toMatchObject({ state: 'interrupted', counts: { interrupted: 1, cancelled: 0 } });
    // Read again: nothing new changes nothing; the newer record finishes it.
    loaded.countRequeued(new Map([[0, 1]]));
    expect(loaded.stateOf(0)).toBe('interrupted');
    loaded.apply(again);
    expect([loaded.stateOf(0), loaded.isRecorded(0)]).toEqual(['succeeded', true]);
    // The owner's own resume: noted in memory, then its record comes.
    const owner = new Job(meta(1));
    owner.apply(cancelled);
    owner.requeueOver(0);
    owner.enqueue(0, {});
    expect(owner.isRecorded(0)).toBe(false);
    owner.apply(again);
    expect(owner.snapshot(0)).toMatchObject({ state: 'succeeded', counts: { succeeded: 1, cancelled: 0 } });
    // Requeues counted before the records are read (another server's view): the old record leaves it queued.
    const viewer = new Job(meta(1));
    viewer.countRequeued(new Map([[0, 1]]));
    viewer.apply(cancelled);
    expect(viewer.stateOf(0)).toBe('queued');
    viewer.apply(again);
    expect(viewer.stateOf(0)).toBe('succeeded');
  });
});
