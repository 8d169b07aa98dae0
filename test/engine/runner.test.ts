import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { silentLogger } from '../../src/log.js';
import type { ScriptPool } from '../../src/pools/script/pool.js';
import { JobStore } from '../../src/store/store.js';
import { makeTempDir } from '../helpers/client.js';
import { scriptConfig, scriptPool, until } from '../helpers/scripts.js';
import { cleanup, tempDir } from './harness.js';

/** How runs are counted (runner.ts): an attempt is a run that reached its worker. */

afterEach(cleanup);

const pools: ScriptPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

async function scriptEngine(dir: string): Promise<{ engine: Engine; store: JobStore }> {
  const config = await scriptConfig((c) => {
    c.stateDir = dir;
    c.allowedRoots = ['/tmp'];
  });
  const pool = scriptPool(config);
  pools.push(pool);
  const store = new JobStore(dir, silentLogger);
  const engine = new Engine({ store, pools: [pool], log: silentLogger, retentionDays: 7 });
  await engine.init();
  return { engine, store };
}

describe('attempts', () => {
  it('counts no attempt for a start that never reached the worker, and the first real run is attempt 1', async () => {
    const dir = await tempDir();
    const cwd = await makeTempDir('monitor-attempts-cwd-');
    const log = path.join(dir, 'real-runs.log');
    const { engine, store } = await scriptEngine(dir);
    const job = await engine.submit({
      kind: 'script',
      inputs: Array.from({ length: 3 }, () => ({ args: [log, '1'] })),
      options: { worker: 'record.py', cwd, timeout_seconds: 30 },
      concurrency: 1,
    });
    // The cwd vanishes while the first task runs: the next starts fail before their worker runs.
    await until(async () => (await readFile(log, 'utf8').catch(() => '')).startsWith('start'), 'the first run', 20_000);
    await rm(cwd, { recursive: true, force: true });
    expect(await engine.waitFor([job.id], 30_000)).toBe(true);
    const first = await store.readResults(job.id);
    expect(first.map((record) => record.error?.code)).toEqual([undefined, 'SPAWN_FAILED', 'SPAWN_FAILED']);
    // Before: [1, 1, 1] (a run counted at the scheduler's start), though two never ran.
    expect(first.map((record) => record.attempt)).toEqual([1, 0, 0]);
    expect([0, 1, 2].map((index) => engine.taskAttempt(job.id, index))).toEqual([1, 0, 0]);
    await store.flush(job.id);
    expect(Object.fromEntries(await store.readRuns(job.id))).toEqual({ 0: 1 });

    await mkdir(cwd, { recursive: true });
    await engine.resume(job.id, { failed: true });
    expect(await engine.waitFor([job.id], 30_000)).toBe(true);
    const realRuns = (await readFile(log, 'utf8')).split('\n').filter((line) => line.startsWith('start'));
    expect(realRuns).toHaveLength(3);
    const latest = (await store.readResults(job.id)).slice(3);
    expect(latest.map((record) => [record.index, record.state, record.attempt])).toEqual([
      [1, 'succeeded', 1],
      [2, 'succeeded', 1],
    ]);
    await store.flush(job.id);
    expect(Object.fromEntries(await store.readRuns(job.id))).toEqual({ 0: 1, 1: 1, 2: 1 });
    await engine.close(0);

    // A later server counts the same: one attempt per real run.
    const again = await scriptEngine(dir);
    expect([0, 1, 2].map((index) => again.engine.taskAttempt(job.id, index))).toEqual([1, 1, 1]);
    await again.engine.close(0);
    await rm(cwd, { recursive: true, force: true });
  }, 60_000);
});
