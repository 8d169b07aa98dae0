import { describe, expect, it } from 'vitest';
import { Job } from '../../src/engine/job.js';
import { Scheduler } from '../../src/engine/scheduler.js';
import type { JobMeta, Pool } from '../../src/engine/types.js';

const pool = (concurrency: number): Pool => ({ kind: 'k', concurrency, run: () => Promise.resolve({ ok: true }) });

function job(id: string, tasks: number, concurrency: number): Job {
  const meta: JobMeta = { id, kind: 'k', createdAt: new Date(0).toISOString(), taskCount: tasks, concurrency, options: {} };
  const j = new Job(meta);
  for (let i = 0; i < tasks; i++) j.enqueue(i, { n: i });
  return j;
}

/** A scheduler over one pool whose starts are only recorded (`job#index`). */
function recording(limit: number): { scheduler: Scheduler; started: string[] } {
  const started: string[] = [];
  const scheduler = new Scheduler([pool(limit)], (_pool, j, index) => {
    j.running.set(index, new AbortController());
    started.push(`${j.id}#${index}`);
  });
  return { scheduler, started };
}

describe('Scheduler', () => {
  it('holds the pool limit and each job\'s own, serves jobs round-robin, and refills a freed slot at once', () => {
    const { scheduler, started } = recording(3);
    const big = job('big', 10, 2);
    const small = job('small', 2, 5);
    scheduler.add(big);
    scheduler.add(small);
    // Pool limit 3; big may run 2 at once, small takes the third slot.
    expect(started).toEqual(['big#0', 'big#1', 'small#0']);
    // small#0 ends: its slot goes on at once, to the next job in turn with room.
    small.running.delete(0);
    scheduler.finished(small);
    expect(started.at(-1)).toBe('small#1');
    big.running.delete(0);
    scheduler.finished(big);
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
    a.running.delete(0);
    scheduler.finished(a);
    expect(started).toEqual(['a#0', 'a#1']);
    scheduler.stop();
    a.running.delete(1);
    scheduler.finished(a);
    expect(started).toEqual(['a#0', 'a#1']);
  });

  it('refuses a pool whose limit is not a positive integer', () => {
    expect(() => new Scheduler([pool(0)], () => undefined)).toThrow(/integer from 1 and up, got 0/);
  });
});
