import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { MonitorError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { eventually, until } from '../helpers/scripts.js';
import { cleanup, SleepPool, tasks, tempDir } from './harness.js';

/** A server (pid) on the state directory `dir`, taking the pids in `alive` for live processes. */
function serverOn(dir: string, pid: number, alive: ReadonlySet<number>): Engine {
  return new Engine({
    store: new JobStore(dir, silentLogger),
    pools: [new SleepPool(8)],
    log: silentLogger,
    retentionDays: 7,
    ownership: { pid, isAlive: (p) => alive.has(p) },
  });
}

afterEach(cleanup);

describe('Engine with two servers on one state directory', () => {
  it("leaves a live server's job alone, follows its progress, and interrupts it once that server is gone", async () => {
    const dir = await tempDir();
    const alive = new Set([101, 202]);
    const ownership = (pid: number) => ({ pid, isAlive: (p: number) => alive.has(p) });
    const a = new Engine({
      store: new JobStore(dir, silentLogger),
      pools: [new SleepPool(4)],
      log: silentLogger,
      retentionDays: 7,
      ownership: ownership(101),
    });
    await a.init();
    const job = await a.submit({
      kind: 'sleep',
      inputs: [...tasks(1, 1), ...tasks(2, 3000)],
      options: {},
      concurrency: 4,
    });
    expect(await eventually(() => a.snapshotOf(job.id).counts.succeeded === 1, 20_000)).toBe(true);

    const b = new Engine({
      store: new JobStore(dir, silentLogger),
      pools: [new SleepPool(4)],
      log: silentLogger,
      retentionDays: 7,
      ownership: ownership(202),
    });
    expect(await b.init()).toMatchObject({ interrupted: 0 });
    const seen = b.snapshotOf(job.id);
    expect(seen).toMatchObject({ state: 'running', ownerPid: 101 });
    expect(seen.counts).toMatchObject({ succeeded: 1, running: 2 });
    await expect(b.cancel(job.id)).rejects.toThrow(/another monitor-mcp process \(pid 101\)/);
    expect(await b.waitFor([job.id], 30_000)).toBe(true);
    expect(b.snapshotOf(job.id)).toMatchObject({ state: 'succeeded', counts: { succeeded: 3 } });

    const second = await a.submit({ kind: 'sleep', inputs: tasks(2, 5000), options: {}, concurrency: 2 });
    await b.refresh();
    expect(b.snapshotOf(second.id).state).toBe('running');
    alive.delete(101);
    await b.refresh([second.id]);
    expect(b.snapshotOf(second.id)).toMatchObject({ state: 'interrupted', counts: { interrupted: 2 } });
    expect((await b.resume(second.id)).requeued).toBe(2);
    await b.cancel(second.id);
    await a.close(1000);
    await b.close(1000);
  });

  it('two servers resuming one interrupted job at once: exactly one runs it, the other sees the new owner at once', async () => {
    const dir = await tempDir();
    const alive = new Set([100, 1, 2]);
    const server = (pid: number): Engine => serverOn(dir, pid, alive);
    const crashed = server(100);
    await crashed.init();
    const job = await crashed.submit({
      kind: 'sleep',
      inputs: [...tasks(2, 1), ...tasks(4, 1500)],
      options: {},
      concurrency: 6,
    });
    expect(
      await eventually(
        () => crashed.snapshotOf(job.id).counts.succeeded === 2 && crashed.snapshotOf(job.id).counts.running === 4,
        20_000,
      ),
    ).toBe(true);
    // A kill -9: the process is gone, its running tasks leave no record.
    alive.delete(100);
    await crashed.close(0);

    const [c, d] = [server(1), server(2)];
    expect(await c.init()).toMatchObject({ interrupted: 1 });
    expect(await d.init()).toMatchObject({ interrupted: 1 });
    const outcomes = await Promise.allSettled([c.resume(job.id), d.resume(job.id)]);
    const won = outcomes.flatMap((o, i) =>
      o.status === 'fulfilled' ? [{ engine: [c, d][i] as Engine, requeued: o.value.requeued }] : [],
    );
    const lost = outcomes.flatMap((o, i) =>
      o.status === 'rejected' ? [{ engine: [c, d][i] as Engine, error: o.reason as MonitorError }] : [],
    );
    expect(won).toHaveLength(1);
    expect(won[0]?.requeued).toBe(4);
    expect(lost).toHaveLength(1);
    expect(lost[0]?.error.code).toBe('JOB_OWNED_ELSEWHERE');
    const winner = won[0]?.engine as Engine;
    const loser = lost[0]?.engine as Engine;
    const winnerPid = winner === c ? 1 : 2;
    // The loser follows the job from disk now: the winner runs it.
    expect(loser.snapshotOf(job.id)).toMatchObject({ state: 'running', ownerPid: winnerPid });
    await expect(loser.cancel(job.id)).rejects.toMatchObject({ code: 'JOB_OWNED_ELSEWHERE' });
    await expect(loser.resume(job.id)).rejects.toMatchObject({ code: 'JOB_OWNED_ELSEWHERE' });

    expect(await winner.waitFor([job.id], 30_000)).toBe(true);
    const records = await winner.results(job.id);
    expect(records).toHaveLength(6);
    expect(new Set(records.map((r) => r.index)).size).toBe(6);
    // The runs cut off by the crash count: the resumed tasks are on their second attempt.
    expect(
      records
        .filter((r) => r.attempt === 2)
        .map((r) => r.index)
        .sort(),
    ).toEqual([2, 3, 4, 5]);
    expect(await loser.waitFor([job.id], 30_000)).toBe(true);
    expect(loser.snapshotOf(job.id)).toMatchObject({ state: 'succeeded', counts: { succeeded: 6 } });

    // A third server that starts now sees the finished job; a fourth's resume has nothing to do.
    const late = server(3);
    await late.init();
    expect((await late.resume(job.id)).requeued).toBe(0);
    await Promise.all([c.close(1000), d.close(1000), late.close(1000)]);
  });

  it('a server that took a job and died leaves it to the next one', async () => {
    const dir = await tempDir();
    const alive = new Set([100, 1, 2]);
    const server = (pid: number): Engine => serverOn(dir, pid, alive);
    const first = server(100);
    await first.init();
    const job = await first.submit({ kind: 'sleep', inputs: tasks(2, 10_000), options: {}, concurrency: 2 });
    alive.delete(100);
    await first.close(0);
    const second = server(1);
    await second.init();
    expect((await second.resume(job.id)).requeued).toBe(2);
    alive.delete(1);
    await second.close(0);
    const third = server(2);
    await third.init();
    expect(third.snapshotOf(job.id).state).toBe('interrupted');
    expect((await third.resume(job.id)).requeued).toBe(2);
    await third.cancel(job.id);
    const records = await third.results(job.id);
    // Two runs each were cut off before this one; the cancel records the third.
    expect(records.map((r) => [r.state, r.attempt])).toEqual([
      ['cancelled', 3],
      ['cancelled', 3],
    ]);
    await third.close(1000);
  });
});

describe("Another server's view of a job, and a job whose owner is gone", () => {
  it("counts only the tasks started as running, never more than the job's concurrency; the rest are queued", async () => {
    const dir = await tempDir();
    const alive = new Set([101, 202]);
    const owner = serverOn(dir, 101, alive);
    await owner.init();
    const job = await owner.submit({ kind: 'sleep', inputs: tasks(300, 60_000), options: {}, concurrency: 2 });
    const viewer = serverOn(dir, 202, alive);
    await viewer.init();
    // Before the first result: started tasks run, the others wait (not "queued" for the whole job, nor 300 running).
    await until(async () => {
      await viewer.refresh([job.id]);
      return viewer.snapshotOf(job.id).counts.running === 2;
    }, 'the viewer to see both started tasks');
    expect(viewer.snapshotOf(job.id)).toMatchObject({ state: 'running', counts: { running: 2, queued: 298 } });
    await owner.cancel(job.id);
    expect(await viewer.waitFor([job.id], 20_000)).toBe(true);
    expect(viewer.snapshotOf(job.id)).toMatchObject({ state: 'cancelled', counts: { cancelled: 300, running: 0 } });
    await Promise.all([owner.close(1000), viewer.close(1000)]);
  });

  it('a job resumed from cancelled whose new owner crashes loads as interrupted, and a plain resume runs its tasks', async () => {
    const dir = await tempDir();
    const alive = new Set([100, 1, 2]);
    const server = (pid: number): Engine => serverOn(dir, pid, alive);
    const first = server(100);
    await first.init();
    const job = await first.submit({
      kind: 'sleep',
      inputs: [...tasks(1, 1), ...tasks(3, 60_000)],
      options: {},
      concurrency: 2,
    });
    await until(
      () => first.snapshotOf(job.id).counts.succeeded === 1 && first.snapshotOf(job.id).counts.running === 2,
      'the first task to finish and two to run',
    );
    await first.cancel(job.id);
    expect(await first.waitFor([job.id], 20_000)).toBe(true);
    expect(first.snapshotOf(job.id)).toMatchObject({ state: 'cancelled', counts: { cancelled: 3 } });
    expect((await first.resume(job.id, { cancelled: true })).requeued).toBe(3);
    await until(() => first.snapshotOf(job.id).counts.running === 2, 'two tasks to run again');

    // Another server sees them run and wait again, not cancelled.
    const viewer = server(2);
    await viewer.init();
    expect(viewer.snapshotOf(job.id)).toMatchObject({
      state: 'running',
      counts: { succeeded: 1, running: 2, queued: 1, cancelled: 0 },
    });

    // A kill -9 of the new owner: two tasks running, one queued, none recorded.
    alive.delete(100);
    await first.close(0);
    const second = server(1);
    expect(await second.init()).toMatchObject({ interrupted: 1 });
    expect(second.snapshotOf(job.id)).toMatchObject({
      state: 'interrupted',
      counts: { succeeded: 1, interrupted: 3, cancelled: 0 },
    });
    await viewer.refresh([job.id]);
    expect(viewer.snapshotOf(job.id)).toMatchObject({ state: 'interrupted', counts: { interrupted: 3 } });
    expect((await second.resume(job.id)).requeued).toBe(3);
    expect(second.snapshotOf(job.id).counts).toMatchObject({ running: 2, queued: 1 });
    await second.cancel(job.id);
    expect(await second.waitFor([job.id], 20_000)).toBe(true);
    await Promise.all([second.close(1000), viewer.close(1000)]);
  });

  it('cancel of an interrupted job takes it over and records its tasks as cancelled, for every server and after a restart', async () => {
    const dir = await tempDir();
    const alive = new Set([100, 1, 2, 3]);
    const server = (pid: number): Engine => serverOn(dir, pid, alive);
    const first = server(100);
    await first.init();
    const job = await first.submit({
      kind: 'sleep',
      inputs: [...tasks(1, 1), ...tasks(3, 60_000)],
      options: {},
      concurrency: 2,
    });
    await until(() => first.snapshotOf(job.id).counts.succeeded === 1, 'the first task to finish');
    // The second server follows the job while its owner lives; then the owner is killed.
    const second = server(1);
    await second.init();
    expect(second.snapshotOf(job.id).state).toBe('running');
    alive.delete(100);
    await first.close(0);

    const cancelled = await second.cancel(job.id);
    expect(cancelled).toMatchObject({ state: 'cancelled', counts: { succeeded: 1, cancelled: 3, interrupted: 0 } });
    const records = await second.results(job.id);
    expect(records.filter((r) => r.state === 'cancelled').map((r) => r.index)).toEqual([1, 2, 3]);
    expect(records.find((r) => r.state === 'cancelled')?.error?.message).toMatch(/server.*stopped/);

    // Another live server sees it cancelled (not run by the server that cancelled it), and so does one started later.
    const viewer = server(2);
    await viewer.init();
    expect(viewer.snapshotOf(job.id)).toMatchObject({ state: 'cancelled', counts: { cancelled: 3 } });
    alive.delete(1);
    await second.close(1000);
    const later = server(3);
    await later.init();
    expect(later.snapshotOf(job.id)).toMatchObject({ state: 'cancelled', counts: { cancelled: 3 } });
    // Still resumable: the cancelled tasks run again when asked.
    expect((await later.resume(job.id)).requeued).toBe(0);
    expect((await later.resume(job.id, { cancelled: true })).requeued).toBe(3);
    await later.cancel(job.id);
    await Promise.all([later.close(1000), viewer.close(1000)]);
  });
});
