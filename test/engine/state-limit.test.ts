import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { Pool, TaskContext, TaskResult } from '../../src/engine/types.js';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { makeTempDir } from '../helpers/client.js';
import { until } from '../helpers/scripts.js';

/** Tasks that return `bytes` of text (it lands in results.jsonl), after `ms`. */
class PaddingPool implements Pool {
  readonly kind = 'pad';
  readonly concurrency = 4;
  async run(task: TaskContext): Promise<TaskResult> {
    const { bytes, ms } = task.input as { bytes: number; ms: number };
    await sleep(ms, undefined, { signal: task.signal });
    return { ok: true, value: { text: 'x'.repeat(bytes) } };
  }
}

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('the state directory size limit', () => {
  it('removes the oldest finished jobs once the jobs together outgrow it, never a running one', async () => {
    const dir = await makeTempDir();
    dirs.push(dir);
    const store = new JobStore(dir, silentLogger);
    const engine = new Engine({
      store,
      pools: [new PaddingPool()],
      log: silentLogger,
      retentionDays: 7,
      maxStateBytes: 150_000,
    });
    await engine.init();
    const tasks = (n: number, bytes: number, ms = 1): unknown[] => Array.from({ length: n }, () => ({ bytes, ms }));
    const oldest = await engine.submit({ kind: 'pad', inputs: tasks(3, 15_000), options: {}, concurrency: 3 });
    expect(await engine.waitFor([oldest.id], 20_000)).toBe(true);
    const older = await engine.submit({ kind: 'pad', inputs: tasks(3, 15_000), options: {}, concurrency: 3 });
    expect(await engine.waitFor([older.id], 20_000)).toBe(true);
    // A running job that alone holds more than the rest: counted, but not removable.
    const running = await engine.submit({
      kind: 'pad',
      inputs: tasks(2, 0, 60_000).map((t, i) => ({ ...(t as object), pad: 'p'.repeat(i === 0 ? 40_000 : 1) })),
      options: {},
      concurrency: 2,
    });
    expect(engine.get(oldest.id)).toBeDefined();

    // ~46 KB + ~46 KB + ~41 KB, and ~31 KB more: over 150 KB, and under once the oldest is gone.
    const newest = await engine.submit({ kind: 'pad', inputs: tasks(1, 30_000), options: {}, concurrency: 1 });
    expect(await engine.waitFor([newest.id], 20_000)).toBe(true);
    await until(() => engine.get(oldest.id) === undefined, 'the oldest finished job to be removed', 20_000);
    expect(await store.jobBytes(oldest.id)).toBe(0);
    expect(engine.get(older.id)).toBeDefined();
    expect(engine.get(newest.id)).toBeDefined();
    expect(engine.get(running.id)?.state).toBe('running');
    await engine.cancel(running.id);
    await engine.close(1000);
  });
});
