import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { Pool, TaskContext, TaskResult } from '../../src/engine/types.js';
import { silentLogger } from '../../src/log.js';
import type { TaskRecord } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { eventually, until } from '../helpers/scripts.js';
import { cleanup, setup, SleepPool, tasks, tempDir } from './harness.js';

afterEach(cleanup);

describe('Engine', () => {
  it('runs every task, respects the job limit and records results durably', async () => {
    const { engine, pool, store } = await setup(8);
    const job = await engine.submit({ kind: 'sleep', inputs: tasks(10, 30), options: {}, concurrency: 3 });
    expect(await engine.waitFor([job.id], 10_000)).toBe(true);
    expect(pool.peak).toBe(3);
    const snapshot = engine.snapshotOf(job.id);
    expect(snapshot.state).toBe('succeeded');
    expect(snapshot.counts).toMatchObject({ total: 10, succeeded: 10, queued: 0, running: 0 });
    expect(snapshot.peakRunning).toBe(3);
    expect(snapshot.totals).toEqual({ fields: { units: 50 }, text: '50 units' });
    const records = await store.readResults(job.id);
    expect(records.map((r) => r.index).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(records.every((r) => r.state === 'succeeded' && r.durationMs !== undefined)).toBe(true);
  });

  it('shares a pool limit across jobs and serves jobs round-robin', async () => {
    const { engine, pool } = await setup(2);
    const big = await engine.submit({ kind: 'sleep', inputs: tasks(20, 20), options: {}, concurrency: 2 });
    const small = await engine.submit({ kind: 'sleep', inputs: tasks(2, 20), options: {}, concurrency: 2 });
    // The big job ran while the small one was being written: count from when the small one was in.
    const startedBefore = pool.started.length;
    await engine.waitFor([big.id, small.id], 10_000);
    expect(pool.peak).toBe(2);
    // The small job must not wait behind all the big one's queue: they take turns.
    const lastSmall = Math.max(...pool.started.map((s, i) => (s.jobId === small.id ? i : -1)));
    expect(
      lastSmall - startedBefore,
      pool.started.map((s) => (s.jobId === small.id ? 'S' : 'B')).join(''),
    ).toBeLessThan(5);
  });

  it('cancel drops queued tasks, aborts running ones, and keeps finished results', async () => {
    const { engine, store } = await setup(4);
    const job = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 1 }, ...tasks(5, 5000)],
      options: {},
      concurrency: 2,
    });
    expect(await eventually(() => engine.snapshotOf(job.id).counts.succeeded === 1, 20_000)).toBe(true);
    const after = await engine.cancel(job.id);
    expect(after.counts).toMatchObject({ succeeded: 1, queued: 0 });
    expect(after.counts.cancelled + after.counts.running).toBe(5);
    await engine.waitFor([job.id], 5000);
    const done = engine.snapshotOf(job.id);
    expect(done.state).toBe('cancelled');
    expect(done.counts).toMatchObject({ succeeded: 1, cancelled: 5, running: 0, queued: 0 });
    const records = await store.readResults(job.id);
    expect(records.filter((r) => r.state === 'cancelled').map((r) => r.error?.code)).toEqual(
      Array(5).fill('CANCELLED'),
    );
  });

  it('after a restart, unfinished tasks are interrupted and resume finishes them in the same job', async () => {
    const first = await setup(4);
    const job = await first.engine.submit({
      kind: 'sleep',
      inputs: [...tasks(2, 1), ...tasks(3, 10_000)],
      options: { a: 1 },
      concurrency: 4,
    });
    expect(await eventually(() => first.engine.snapshotOf(job.id).counts.succeeded === 2, 20_000)).toBe(true);
    await first.engine.close(2000);

    const store = new JobStore(first.dir, silentLogger);
    const pool = new SleepPool(4);
    const engine = new Engine({ store, pools: [pool], log: silentLogger, retentionDays: 7 });
    expect(await engine.init()).toMatchObject({ loaded: 1, interrupted: 1 });
    const loaded = engine.snapshotOf(job.id);
    expect(loaded.state).toBe('interrupted');
    expect(loaded.counts).toMatchObject({ succeeded: 2, interrupted: 3 });

    // Make the interrupted tasks quick this time by editing nothing but the pool: inputs come from disk.
    const inputsFile = path.join(store.jobDir(job.id), 'inputs.jsonl');
    expect((await readFile(inputsFile, 'utf8')).trim().split('\n')).toHaveLength(5);
    await writeFile(
      inputsFile,
      tasks(5, 5)
        .map((t) => JSON.stringify(t))
        .join('\n') + '\n',
    );
    const { requeued } = await engine.resume(job.id);
    expect(requeued).toBe(3);
    await engine.waitFor([job.id], 5000);
    const resumed = engine.snapshotOf(job.id);
    expect(resumed.state).toBe('succeeded');
    expect(resumed.counts.succeeded).toBe(5);
    const attempts = (await store.readResults(job.id)).filter((r) => r.attempt === 2);
    expect(attempts).toHaveLength(3);
  });

  it("keeps a job's peak of tasks at once across a crash", async () => {
    const first = await setup(8);
    const job = await first.engine.submit({ kind: 'sleep', inputs: tasks(3, 30_000), options: {}, concurrency: 3 });
    // Saved within a second of being reached, not only when the job ends.
    await until(async () => (await first.store.readMeta(job.id)).peakRunning === 3, 'the peak to be saved', 10_000);
    await first.engine.close(0);
    const engine = new Engine({
      store: new JobStore(first.dir, silentLogger),
      pools: [new SleepPool(8)],
      log: silentLogger,
      retentionDays: 7,
    });
    await engine.init();
    expect(engine.snapshotOf(job.id)).toMatchObject({ state: 'interrupted', peakRunning: 3 });
    await engine.close(0);
  });

  it("tells the pool once when a job's run ends: finished, cancelled with tasks running, cancelled with nothing running, and again after a resume", async () => {
    const { engine, pool } = await setup(1);
    const finished = await engine.submit({ kind: 'sleep', inputs: tasks(3, 5), options: {}, concurrency: 2 });
    await engine.waitFor([finished.id], 10_000);
    await until(() => pool.ended.length === 1, 'the finished job to be reported', 10_000);
    expect(pool.ended).toEqual([{ jobId: finished.id, running: 0 }]);

    // The pool's one slot: a job runs a long task while another waits with all its tasks queued.
    const running = await engine.submit({ kind: 'sleep', inputs: tasks(2, 30_000), options: {}, concurrency: 1 });
    const waiting = await engine.submit({ kind: 'sleep', inputs: tasks(2, 5), options: {}, concurrency: 1 });
    await until(() => pool.running === 1, 'the long task to run', 10_000);
    await engine.cancel(waiting.id);
    expect(pool.ended.at(-1)).toEqual({ jobId: waiting.id, running: 1 });
    await engine.cancel(running.id);
    await engine.waitFor([running.id], 10_000);
    expect(pool.ended.slice(1)).toEqual([
      { jobId: waiting.id, running: 1 },
      { jobId: running.id, running: 0 },
    ]);

    // Resumed, it runs (and ends) again.
    await engine.resume(waiting.id, { cancelled: true });
    await engine.waitFor([waiting.id], 10_000);
    await until(() => pool.ended.length === 4, 'the resumed job to be reported', 10_000);
    expect(pool.ended.at(-1)?.jobId).toBe(waiting.id);
    expect(pool.ended.filter((e) => e.jobId === finished.id)).toHaveLength(1);
  });

  it('reports a finished task only once its result is on disk: what a reply counted survives a crash', async () => {
    const dir = await tempDir();
    /** A store whose result writes wait until the test lets them through (a slow disk). */
    class HeldStore extends JobStore {
      readonly held: Array<() => void> = [];
      override appendResult(jobId: string, record: TaskRecord): Promise<void> {
        return new Promise<void>((resolve) => this.held.push(resolve)).then(() => super.appendResult(jobId, record));
      }
    }
    const store = new HeldStore(dir, silentLogger);
    const engine = new Engine({ store, pools: [new SleepPool(4)], log: silentLogger, retentionDays: 7 });
    await engine.init();
    const job = await engine.submit({ kind: 'sleep', inputs: tasks(2, 1), options: {}, concurrency: 2 });
    await until(() => store.held.length === 2, 'both results to be on their way to disk', 10_000);
    // Both tasks have returned, neither result is written: nothing may be reported as finished yet.
    expect(engine.snapshotOf(job.id).counts).toMatchObject({ succeeded: 0, running: 2 });
    expect(engine.isDone(job.id)).toBe(false);
    store.held.shift()?.();
    await until(
      () => engine.snapshotOf(job.id).counts.succeeded === 1,
      'the first result to count once written',
      10_000,
    );
    expect((await store.readResults(job.id)).length).toBe(1);
    store.held.shift()?.();
    expect(await engine.waitFor([job.id], 10_000)).toBe(true);
    expect((await store.readResults(job.id)).length).toBe(2);
    await engine.close(0);
  });

  it('cancelling a finished job changes nothing', async () => {
    const { engine } = await setup(4);
    const job = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 1 }, { ms: 1, fail: true }],
      options: {},
      concurrency: 2,
    });
    await engine.waitFor([job.id], 5000);
    expect((await engine.cancel(job.id)).state).toBe('failed');
    expect(engine.snapshotOf(job.id).state).toBe('failed');
  });

  it('keeps a result that completed while its job was being cancelled or the server closing', async () => {
    const { engine, store } = await setup(4);
    const finishing: Pool = {
      kind: 'sleep',
      concurrency: 1,
      async run(task) {
        await new Promise((resolve) => task.signal.addEventListener('abort', resolve, { once: true }));
        return { ok: true, value: { text: 'done anyway' } };
      },
    };
    const engine2 = new Engine({ store, pools: [finishing], log: silentLogger, retentionDays: 7 });
    const job = await engine2.submit({ kind: 'sleep', inputs: [{}], options: {}, concurrency: 1 });
    expect(await eventually(() => engine2.snapshotOf(job.id).counts.running === 1, 20_000)).toBe(true);
    await engine2.close(2000);
    expect((await store.readResults(job.id)).map((r) => r.state)).toEqual(['succeeded']);
    await engine.close(100);
  });

  it('retries failed tasks only when asked', async () => {
    const { engine } = await setup(4);
    const job = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 1 }, { ms: 1, fail: true }],
      options: {},
      concurrency: 2,
    });
    await engine.waitFor([job.id], 5000);
    expect(engine.snapshotOf(job.id).state).toBe('failed');
    expect((await engine.resume(job.id)).requeued).toBe(0);
    expect((await engine.resume(job.id, { failed: true })).requeued).toBe(1);
    await engine.waitFor([job.id], 5000);
    expect(engine.snapshotOf(job.id).counts).toMatchObject({ succeeded: 1, failed: 1 });
  });

  it('removes jobs past retention on start and ignores a torn last result line', async () => {
    let clock = new Date('2026-01-01T00:00:00Z');
    const first = await setup(4, () => clock);
    const old = await first.engine.submit({ kind: 'sleep', inputs: tasks(1, 1), options: {}, concurrency: 1 });
    await first.engine.waitFor([old.id], 5000);
    clock = new Date('2026-01-07T00:00:00Z');
    const recent = await first.engine.submit({ kind: 'sleep', inputs: tasks(2, 1), options: {}, concurrency: 1 });
    await first.engine.waitFor([recent.id], 5000);
    await first.store.flush();
    await writeFile(path.join(first.store.jobDir(recent.id), 'results.jsonl'), '{"index":0,"sta', { flag: 'a' });

    clock = new Date('2026-01-09T00:00:00Z');
    const store = new JobStore(first.dir, silentLogger);
    const engine = new Engine({
      store,
      pools: [new SleepPool(1)],
      log: silentLogger,
      retentionDays: 7,
      now: () => clock,
    });
    expect(await engine.init()).toMatchObject({ loaded: 1, removed: 1 });
    expect(engine.get(old.id)).toBeUndefined();
    expect(engine.snapshotOf(recent.id).counts.succeeded).toBe(2);
  });

  it('rejects unknown jobs and bad concurrency with actionable errors', async () => {
    const { engine } = await setup(1);
    expect(() => engine.snapshotOf('job_nope')).toThrow(/No job "job_nope".*/);
    await expect(engine.submit({ kind: 'sleep', inputs: tasks(1, 1), options: {}, concurrency: 0 })).rejects.toThrow(
      /integer from 1 and up/,
    );
    await expect(engine.submit({ kind: 'sleep', inputs: [], options: {}, concurrency: 1 })).rejects.toThrow(
      /at least one task/,
    );
  });

  it('job ids are unguessable and job folders are only readable by the user', async () => {
    const ids = new Set(Array.from({ length: 1000 }, () => JobStore.newJobId()));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(JobStore.isJobId(id)).toBe(true);
    const { engine, store } = await setup(1);
    const job = await engine.submit({ kind: 'sleep', inputs: tasks(1, 1), options: {}, concurrency: 1 });
    expect((await stat(store.jobDir(job.id))).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(store.jobDir(job.id), 'job.json'))).mode & 0o777).toBe(0o600);
    await engine.waitFor([job.id], 5000);
  });
});

/** A real pool that runs up to `options.batch` tasks of a job together: each batch sleeps its longest `ms`. */
class BatchPool implements Pool {
  readonly kind = 'batch';
  /** Batches (and lone runs) at once: what the limits count. */
  slots = 0;
  peakSlots = 0;
  batches: number[][] = [];
  aborted = 0;
  constructor(readonly concurrency: number) {}
  batchSize(options: unknown): number {
    return (options as { batch?: number }).batch ?? 1;
  }
  label(input: unknown): string {
    return `item ${(input as { name: string }).name}`;
  }
  async run(task: TaskContext): Promise<TaskResult> {
    const [result] = await this.runBatch([task]);
    return result ?? { ok: false };
  }
  async runBatch(tasks: readonly TaskContext[]): Promise<TaskResult[]> {
    this.slots++;
    this.peakSlots = Math.max(this.peakSlots, this.slots);
    this.batches.push(tasks.map((task) => task.index));
    try {
      const signal = tasks[0]?.signal;
      // The tasks of a batch share one signal.
      expect(tasks.every((task) => task.signal === signal)).toBe(true);
      await sleep(Math.max(...tasks.map((task) => (task.input as { ms: number }).ms)), undefined, { signal });
      return tasks.map((task) =>
        (task.input as { fail?: boolean }).fail
          ? { ok: false, error: { code: 'NON_ZERO_EXIT', message: 'asked to fail' } }
          : { ok: true, value: { index: task.index, with: tasks.length } },
      );
    } catch (error) {
      this.aborted++;
      throw error;
    } finally {
      this.slots--;
    }
  }
}

describe('Engine with a pool that runs tasks in batches', () => {
  async function batchSetup(poolConcurrency: number): Promise<{ engine: Engine; pool: BatchPool; store: JobStore }> {
    const dir = await tempDir();
    const store = new JobStore(dir, silentLogger);
    const pool = new BatchPool(poolConcurrency);
    const engine = new Engine({ store, pools: [pool], log: silentLogger, retentionDays: 7 });
    await engine.init();
    return { engine, pool, store };
  }
  const items = (n: number, ms: number, extra: (i: number) => Record<string, unknown> = () => ({})): unknown[] =>
    Array.from({ length: n }, (_, i) => ({ name: String(i), ms, ...extra(i) }));

  it('counts a batch as one slot of the pool and of the job, and records each task of it as its own', async () => {
    const { engine, pool, store } = await batchSetup(2);
    const job = await engine.submit({
      kind: 'batch',
      inputs: items(20, 30, (i) => (i === 5 ? { fail: true } : {})),
      options: { batch: 4 },
      concurrency: 2,
    });
    expect(await engine.waitFor([job.id], 20_000)).toBe(true);
    expect(pool.peakSlots).toBe(2);
    expect(pool.batches.every((b) => b.length >= 1 && b.length <= 4)).toBe(true);
    expect(pool.batches.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(pool.batches[0]).toEqual([0, 1, 2, 3]);
    const snapshot = engine.snapshotOf(job.id);
    // A task asked to fail fails alone; its batch's others succeed.
    expect(snapshot.counts).toMatchObject({ succeeded: 19, failed: 1, running: 0, queued: 0 });
    // Tasks at once, not slots: two batches of four.
    expect(snapshot.peakRunning).toBe(8);
    const records = await store.readResults(job.id);
    expect(records).toHaveLength(20);
    for (const record of records) {
      expect(record).toMatchObject({ attempt: 1, label: `item ${record.index}`, durationMs: expect.any(Number) });
      if (record.index !== 5) expect(record.value).toMatchObject({ index: record.index });
    }
    expect(records.find((r) => r.index === 5)).toMatchObject({ state: 'failed', error: { code: 'NON_ZERO_EXIT' } });
    // Resumed, the failed task runs again on its own, as attempt 2.
    expect((await engine.resume(job.id, { failed: true })).requeued).toBe(1);
    expect(await engine.waitFor([job.id], 20_000)).toBe(true);
    expect(pool.batches.at(-1)).toEqual([5]);
    expect((await store.readResults(job.id)).filter((r) => r.index === 5).map((r) => r.attempt)).toEqual([1, 2]);
  });

  it("shares the pool's slots between a batching job and one of single tasks", async () => {
    const { engine, pool } = await batchSetup(2);
    const batched = await engine.submit({
      kind: 'batch',
      inputs: items(12, 20),
      options: { batch: 3 },
      concurrency: 2,
    });
    const single = await engine.submit({ kind: 'batch', inputs: items(4, 20), options: {}, concurrency: 2 });
    expect(await engine.waitFor([batched.id, single.id], 20_000)).toBe(true);
    expect(pool.peakSlots).toBe(2);
    expect(engine.snapshotOf(batched.id).counts.succeeded).toBe(12);
    expect(engine.snapshotOf(single.id).counts.succeeded).toBe(4);
  });

  it('cancel aborts every task of a running batch and drops the queued ones', async () => {
    const { engine, pool, store } = await batchSetup(2);
    const job = await engine.submit({ kind: 'batch', inputs: items(6, 30_000), options: { batch: 3 }, concurrency: 1 });
    await until(() => pool.slots === 1, 'the first batch to run', 10_000);
    expect(engine.snapshotOf(job.id).counts).toMatchObject({ running: 3, queued: 3 });
    await engine.cancel(job.id);
    expect(await engine.waitFor([job.id], 10_000)).toBe(true);
    expect(pool.aborted).toBe(1);
    const records = await store.readResults(job.id);
    expect(records.map((r) => r.state)).toEqual(Array(6).fill('cancelled'));
    expect(
      records
        .filter((r) => r.error?.message.includes('while running'))
        .map((r) => r.index)
        .sort(),
    ).toEqual([0, 1, 2]);
    expect(engine.snapshotOf(job.id)).toMatchObject({ state: 'cancelled', counts: { cancelled: 6, running: 0 } });
  });

  it('fails every task of a batch whose pool throws, or returns another number of results', async () => {
    const { engine, store } = await batchSetup(2);
    const throwing: Pool = {
      kind: 'batch',
      concurrency: 1,
      batchSize: () => 2,
      run: () => Promise.reject(new Error('unused')),
      runBatch: () => Promise.reject(new Error('the batch broke')),
    };
    const short: Pool = {
      kind: 'batch',
      concurrency: 1,
      batchSize: () => 2,
      run: () => Promise.reject(new Error('unused')),
      runBatch: () => Promise.resolve([{ ok: true }]),
    };
    for (const [pool, message] of [
      [throwing, /the batch broke/],
      [short, /returned 1 results for a batch of 2 tasks/],
    ] as const) {
      const broken = new Engine({ store, pools: [pool], log: silentLogger, retentionDays: 7 });
      const job = await broken.submit({ kind: 'batch', inputs: items(2, 1), options: {}, concurrency: 1 });
      expect(await broken.waitFor([job.id], 10_000)).toBe(true);
      const records = await store.readResults(job.id);
      expect(records.map((r) => r.state)).toEqual(['failed', 'failed']);
      expect(records.every((r) => message.test(r.error?.message ?? ''))).toBe(true);
      await broken.close(0);
    }
    await engine.close(0);
  });
});

describe('Engine status figures', () => {
  it("never counts more tasks running than the job's concurrency, also while finished ones are being recorded", async () => {
    const { engine } = await setup(16);
    const job = await engine.submit({ kind: 'sleep', inputs: tasks(600, 1), options: {}, concurrency: 16 });
    const seen: Array<{ running: number; sum: number }> = [];
    const sample = (): void => {
      const { counts } = engine.snapshotOf(job.id);
      const sum = counts.queued + counts.running + counts.succeeded + counts.failed + counts.cancelled;
      seen.push({ running: counts.running, sum: sum + counts.interrupted });
    };
    const off = engine.onChange(sample);
    // Also between the engine's own changes: a reply can come at any moment.
    const timer = setInterval(sample, 0);
    try {
      expect(await engine.waitFor([job.id], 60_000)).toBe(true);
    } finally {
      off();
      clearInterval(timer);
    }
    expect(seen.length).toBeGreaterThan(100);
    expect(Math.max(...seen.map((s) => s.running))).toBeLessThanOrEqual(16);
    // Every task is counted once, in one state, whenever one looks.
    expect(seen.every((s) => s.sum === 600)).toBe(true);
    expect(engine.snapshotOf(job.id).counts).toMatchObject({ succeeded: 600, running: 0 });
  }, 90_000);
});
