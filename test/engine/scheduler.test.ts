import { describe, expect, it } from 'vitest';
import { Job } from '../../src/engine/job.js';
import { Scheduler } from '../../src/engine/scheduler.js';
import type { JobMeta, Pool } from '../../src/engine/types.js';

const pool = (concurrency: number): Pool => ({ kind: 'k', concurrency, run: () => Promise.resolve({ ok: true }) });
/** A pool that runs up to `options.batch` tasks of a job together. */
const batching = (concurrency: number): Pool => ({
  ...pool(concurrency),
  batchSize: (options) => (options as { batch?: number }).batch ?? 1,
  runBatch: (tasks) => Promise.resolve(tasks.map(() => ({ ok: true }))),
});

function job(id: string, tasks: number, concurrency: number, options: Record<string, unknown> = {}): Job {
  const meta: JobMeta = { id, kind: 'k', createdAt: new Date(0).toISOString(), taskCount: tasks, concurrency, options };
  const j = new Job(meta);
  for (let i = 0; i < tasks; i++) j.enqueue(i, { n: i });
  return j;
}

/** A scheduler over one pool whose starts are only recorded (`job#index`, a batch's as `job#i+j+k`), their tasks marked running as the engine does. */
function recording(
  limit: number,
  of: (concurrency: number) => Pool = pool,
): { scheduler: Scheduler; started: string[] } {
  const started: string[] = [];
  const scheduler = new Scheduler([of(limit)], (_pool, j, tasks) => {
    for (const { index } of tasks) {
      j.running.set(index, new AbortController());
      j.setState(index, 'running');
    }
    started.push(`${j.id}#${tasks.map((t) => t.index).join('+')}`);
  });
  return { scheduler, started };
}

/** Ends one run the way the engine does: its tasks leave `running`, then its slot is handed on. */
function finish(scheduler: Scheduler, j: Job, ...indices: number[]): void {
  for (const index of indices) {
    j.running.delete(index);
    j.setState(index, 'succeeded');
  }
  scheduler.finished(j);
}

describe('Scheduler', () => {
  it("holds the pool limit and each job's own, serves jobs round-robin, and refills a freed slot at once", () => {
    const { scheduler, started } = recording(3);
    const big = job('big', 10, 2);
    const small = job('small', 2, 5);
    scheduler.add(big);
    scheduler.add(small);
    // Pool limit 3; big may run 2 at once, small takes the third slot.
    expect(started).toEqual(['big#0', 'big#1', 'small#0']);
    // small#0 ends: its slot goes on at once, to the next job in turn with room.
    finish(scheduler, small, 0);
    expect(started.at(-1)).toBe('small#1');
    finish(scheduler, big, 0);
    expect(started.at(-1)).toBe('big#2');
    expect(big.running.size).toBe(2);
  });

  it('stops serving a job whose queue was dropped, and starts nothing once stopped', () => {
    const { scheduler, started } = recording(1);
    const a = job('a', 3, 1);
    const b = job('b', 3, 1);
    scheduler.add(a);
    scheduler.add(b);
    scheduler.remove(b);
    b.dropQueued();
    finish(scheduler, a, 0);
    expect(started).toEqual(['a#0', 'a#1']);
    scheduler.stop();
    finish(scheduler, a, 1);
    expect(started).toEqual(['a#0', 'a#1']);
  });

  it("gives a batching pool up to its batch size of one job's tasks per slot, counting a batch as one slot of the pool and of the job", () => {
    const { scheduler, started } = recording(3, batching);
    const packed = job('packed', 40, 2, { batch: 8 });
    const plain = job('plain', 3, 3);
    scheduler.add(packed);
    scheduler.add(plain);
    // Two slots for the packed job (its limit), 8 tasks each; the pool's third slot for the other job.
    expect(started).toEqual(['packed#0+1+2+3+4+5+6+7', 'packed#8+9+10+11+12+13+14+15', 'plain#0']);
    expect(packed.slots).toBe(2);
    expect(packed.running.size).toBe(16);
    // Round-robin as ever: the packed job's turn, then the other's.
    finish(scheduler, packed, 0, 1, 2, 3, 4, 5, 6, 7);
    expect(started.at(-1)).toBe('packed#16+17+18+19+20+21+22+23');
    finish(scheduler, plain, 0);
    expect(started.at(-1)).toBe('plain#1');
    expect(packed.slots).toBe(2);
  });

  it("takes smaller batches as a job's queue runs low, so that no slot is left with a full batch while the others idle", () => {
    const { scheduler, started } = recording(4, batching);
    const packed = job('packed', 10, 2, { batch: 8 });
    scheduler.add(packed);
    // Not 8 then 2: at most the queue's share per slot of the job (guided self-scheduling).
    expect(started).toEqual(['packed#0+1+2+3+4', 'packed#5+6+7']);
    finish(scheduler, packed, 0, 1, 2, 3, 4);
    expect(started.at(-1)).toBe('packed#8');
    finish(scheduler, packed, 8);
    expect(started.at(-1)).toBe('packed#9');
    const single = job('single', 2, 2, { batch: 1 });
    scheduler.add(single);
    expect(started.slice(4)).toEqual(['single#0', 'single#1']);
  });

  it('refuses a pool whose limit is not a positive integer', () => {
    expect(() => new Scheduler([pool(0)], () => undefined)).toThrow(/integer from 1 and up, got 0/);
  });
});
