import { describe, expect, it } from 'vitest';
import type { TaskRecord } from '../../src/engine/types.js';
import { decodeCursor, earlierAttempts, encodeCursor, pageResults } from '../../src/tools/paging.js';

const record = (index: number, state: TaskRecord['state'] = 'succeeded'): TaskRecord => ({
  index,
  state,
  attempt: 1,
  finishedAt: '',
});

describe('paging', () => {
  const jobs = [
    { id: 'a', records: [record(0), record(1, 'failed'), record(2)] },
    { id: 'b', records: [record(0), record(1)] },
  ];
  const render = (jobId: string, r: TaskRecord): { entry: string; cost: number } => ({
    entry: `${jobId}#${r.index}`,
    cost: 10,
  });
  const shrink = (e: { entry: string }, room: number): { entry: string; cost: number } => ({
    entry: `${e.entry} (cut)`,
    cost: room,
  });

  it('fills a page in finish order, job after job, and says how many results are left', () => {
    const page = pageResults({ jobs, offsets: [0, 0], filter: 'all', room: 35, render, shrink });
    expect(page).toMatchObject({ entries: ['a#0', 'a#1', 'a#2'], offsets: [3, 0], cut: true, remaining: 2, used: 30 });
    const next = pageResults({ jobs, offsets: page.offsets, filter: 'all', room: 35, render, shrink });
    expect(next).toMatchObject({ entries: ['b#0', 'b#1'], offsets: [3, 2], cut: false, remaining: 0 });
  });

  it('keeps to the filter, and cuts a single result larger than the page rather than skip it', () => {
    expect(pageResults({ jobs, offsets: [0, 0], filter: 'failed', room: 100, render, shrink }).entries).toEqual([
      'a#1',
    ]);
    expect(pageResults({ jobs, offsets: [0, 0], filter: 'all', room: 4, render, shrink }).entries[0]).toBe('a#0 (cut)');
  });

  it('hides superseded attempts, but never the result of the run that is finishing now', () => {
    const records: TaskRecord[] = [
      { ...record(0), attempt: 1 },
      { ...record(1), attempt: 1 },
      { ...record(0), attempt: 2 },
      { ...record(2), attempt: 3 },
    ];
    const now = new Map([
      [0, { state: 'succeeded', attempt: 2 }],
      // Its attempt-1 record is on disk, the task not yet counted as finished: a page must show it.
      [1, { state: 'running', attempt: 1 }],
      // Resumed: the attempt-3 record is superseded by the run under way.
      [2, { state: 'running', attempt: 4 }],
    ]);
    const hidden = earlierAttempts(records, (index) => now.get(index) ?? { state: 'queued', attempt: 0 });
    expect(records.map((r, at) => hidden(r, at))).toEqual([true, false, false, true]);
    const page = pageResults({
      jobs: [{ id: 'a', records, hidden }],
      offsets: [0],
      filter: 'all',
      room: 1000,
      render,
      shrink,
    });
    expect(page.entries).toEqual(['a#1', 'a#0']);
    now.set(1, { state: 'queued', attempt: 1 });
    expect(hidden(records[1] as TaskRecord, 1)).toBe(true);
  });

  it('round-trips a cursor only for the same job ids in the same order', () => {
    const cursor = encodeCursor([3, 1], ['a', 'b']);
    expect(decodeCursor(cursor, ['a', 'b'])).toEqual([3, 1]);
    expect(() => decodeCursor(cursor, ['b', 'a'])).toThrow(/not one collect_results gave/);
    expect(() => decodeCursor('c2.garbage', ['a', 'b'])).toThrow(/not one collect_results gave/);
  });
});
