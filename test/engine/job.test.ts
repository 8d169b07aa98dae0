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
});
