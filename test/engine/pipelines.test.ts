import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { until } from '../helpers/scripts.js';
import { cleanup, setup, SleepPool, tasks } from './harness.js';

afterEach(cleanup);

describe('Engine: pipeline stages', () => {
  it('an `each` stage runs each task as its upstream task succeeds, and records the others failed without running them', async () => {
    const { engine, pool, store } = await setup(4);
    const up = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 10 }, { ms: 10, fail: true }, { ms: 400 }],
      options: {},
      concurrency: 3,
    });
    const down = await engine.submit({
      kind: 'sleep',
      inputs: tasks(3, 10),
      options: {},
      concurrency: 3,
      after: { job: up.id, mode: 'each' },
    });
    expect(engine.snapshotOf(up.id).feeds).toEqual([down.id]);
    await engine.waitFor([down.id], 20_000);
    const records = await store.readResults(down.id);
    const byIndex = new Map(records.map((r) => [r.index, r]));
    expect(byIndex.get(0)?.state).toBe('succeeded');
    expect(byIndex.get(2)?.state).toBe('succeeded');
    expect(byIndex.get(1)?.state).toBe('failed');
    expect(byIndex.get(1)?.error?.code).toBe('UPSTREAM_FAILED');
    expect(byIndex.get(1)?.error?.message).toMatch(/NON_ZERO_EXIT: asked to fail/);
    expect(
      pool.started
        .filter((s) => s.jobId === down.id)
        .map((s) => s.index)
        .sort(),
    ).toEqual([0, 2]);
    expect(pool.upstreams.get(`${down.id}#2`)?.records.map((r) => r.index)).toEqual([2]);
    // Task 0 of the stage finished before the slow upstream task 2 did: no barrier.
    const upEnd = Date.parse((await store.readResults(up.id)).find((r) => r.index === 2)?.finishedAt ?? '');
    expect(Date.parse(byIndex.get(0)?.finishedAt ?? '')).toBeLessThan(upEnd);
  });

  it("an `all` stage waits for the whole upstream job and gets every task's latest record; a cancel of any stage cancels all", async () => {
    const { engine, pool } = await setup(4);
    const up = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 10 }, { ms: 10, fail: true }, { ms: 150 }],
      options: {},
      concurrency: 3,
    });
    const reduce = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 1 }],
      options: {},
      concurrency: 1,
      after: { job: up.id, mode: 'all' },
    });
    expect(engine.snapshotOf(reduce.id).waiting).toBe(1);
    await engine.waitFor([reduce.id], 20_000);
    expect(pool.upstreams.get(`${reduce.id}#0`)?.records.map((r) => `${r.index}:${r.state}`)).toEqual([
      '0:succeeded',
      '1:failed',
      '2:succeeded',
    ]);

    const up2 = await engine.submit({ kind: 'sleep', inputs: tasks(2, 30_000), options: {}, concurrency: 2 });
    const reduce2 = await engine.submit({
      kind: 'sleep',
      inputs: [{ ms: 1 }],
      options: {},
      concurrency: 1,
      after: { job: up2.id, mode: 'all' },
    });
    await until(() => pool.running === 2, 'the upstream tasks to run', 10_000);
    await engine.cancel(reduce2.id);
    await engine.waitFor([up2.id, reduce2.id], 10_000);
    expect(engine.snapshotOf(up2.id).state).toBe('cancelled');
    expect(engine.snapshotOf(reduce2.id).state).toBe('cancelled');
  });

  it('after a restart, resuming the last stage resumes every stage; a held task goes once its upstream is in', async () => {
    const { engine, store, dir } = await setup(4);
    const up = await engine.submit({ kind: 'sleep', inputs: [{ ms: 10 }, { ms: 4000 }], options: {}, concurrency: 2 });
    const down = await engine.submit({
      kind: 'sleep',
      inputs: tasks(2, 10),
      options: {},
      concurrency: 2,
      after: { job: up.id, mode: 'each' },
    });
    await until(async () => (await store.readResults(down.id)).length === 1, 'the first stage task to finish', 10_000);
    await engine.close(100);

    const store2 = new JobStore(dir, silentLogger);
    const pool2 = new SleepPool(4);
    const engine2 = new Engine({ store: store2, pools: [pool2], log: silentLogger, retentionDays: 7 });
    await engine2.init();
    expect(engine2.snapshotOf(up.id).state).toBe('interrupted');
    expect(engine2.snapshotOf(down.id).state).toBe('interrupted');
    const { requeued } = await engine2.resume(down.id);
    expect(requeued).toBe(2);
    expect(engine2.snapshotOf(down.id).waiting).toBe(1);
    await engine2.waitFor([down.id], 60_000);
    expect(engine2.snapshotOf(up.id).state).toBe('succeeded');
    expect(engine2.snapshotOf(down.id).state).toBe('succeeded');
    expect((await store2.readResults(down.id)).map((r) => r.index).sort()).toEqual([0, 1]);
    await engine2.close(100);
  }, 90_000);
});
