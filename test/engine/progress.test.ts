import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { ProgressBoard } from '../../src/engine/progress.js';
import type { TaskProgress } from '../../src/engine/types.js';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { SteppingPool } from '../helpers/stepping-pool.js';

// Its own temporary folders (not the shared harness): this file needs no kind, only the engine.
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'monitor-progress-'));
  dirs.push(dir);
  return dir;
}

async function setup(concurrency: number): Promise<{ engine: Engine; pool: SteppingPool }> {
  const pool = new SteppingPool(concurrency);
  const engine = new Engine({
    store: new JobStore(await tempDir(), silentLogger),
    pools: [pool],
    log: silentLogger,
    retentionDays: 7,
  });
  await engine.init();
  return { engine, pool };
}

describe('a running task’s progress', () => {
  it('is kept while the task runs (its last report only) and dropped when it ends; a late report is ignored', async () => {
    const { engine, pool } = await setup(4);
    const job = await engine.submit({
      kind: 'steps',
      inputs: [{ steps: 3 }, { steps: 0 }],
      options: {},
      concurrency: 2,
    });
    await expect
      .poll(() => engine.runningProgress().some((p) => p.figures?.steps === 3), { timeout: 10_000 })
      .toBe(true);
    // Task 1 never reported: only task 0 is listed, with its last step.
    expect(engine.runningProgress()).toEqual([
      {
        jobId: job.id,
        index: 0,
        summary: 'step 3 · grep /TODO/ in src',
        figures: { steps: 3 },
        updatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
      },
    ]);
    pool.finishAll();
    expect(await engine.waitFor([job.id], 10_000)).toBe(true);
    expect(engine.snapshotOf(job.id).state).toBe('succeeded');
    expect(engine.runningProgress()).toEqual([]);
    // A pool's callback called after its task ended changes nothing, and throws nothing.
    pool.reporters.get(0)?.({ summary: 'too late' });
    expect(engine.runningProgress()).toEqual([]);
    await engine.close(2000);
  });

  it('is bounded: 64 tasks listed at most, a summary of 200 characters, 8 figures, no junk; a bad report never throws', async () => {
    const { engine, pool } = await setup(100);
    const huge: TaskProgress = {
      summary: 's'.repeat(10_000),
      figures: Object.fromEntries([
        ['nan', Number.NaN],
        ['object', { a: 1 } as unknown as string],
        ...Array.from({ length: 20 }, (_, i) => [`f${i}`.padEnd(100, 'k'), 'v'.repeat(1000)]),
      ]) as Record<string, string>,
      transcript: `/x/${'d'.repeat(10_000)}`,
    };
    const job = await engine.submit({
      kind: 'steps',
      inputs: [
        { steps: 1, update: huge },
        // Not a progress at all (a pool's bug): ignored, the task runs on.
        { steps: 1, update: { summary: 42 } },
        { steps: 1, update: null },
        ...Array.from({ length: 97 }, () => ({ steps: 2 })),
      ],
      options: {},
      concurrency: 100,
    });
    // Every report made: 1 + 1 + 1 + 97 × 2.
    await expect.poll(() => pool.reports, { timeout: 20_000 }).toBe(197);
    expect(engine.snapshotOf(job.id).counts.running).toBe(100);
    expect(engine.runningProgress()).toHaveLength(64);
    pool.reporters.get(0)?.(huge);
    const [first] = engine.runningProgress();
    expect(first?.index).toBe(0);
    expect(first?.summary).toBe('s'.repeat(200));
    // NaN and the object are not figures, but they count among the first 8 looked at.
    expect(Object.keys(first?.figures ?? {})).toHaveLength(6);
    expect(Object.entries(first?.figures ?? {}).every(([k, v]) => k.length <= 40 && String(v).length <= 120)).toBe(
      true,
    );
    // A path too long to be one is left out rather than cut into another path.
    expect(first?.transcript).toBeUndefined();
    expect(engine.runningProgress().some((p) => p.index === 1 || p.index === 2)).toBe(false);
    pool.finishAll();
    expect(await engine.waitFor([job.id], 20_000)).toBe(true);
    expect(engine.snapshotOf(job.id).counts.succeeded).toBe(100);
    expect(engine.runningProgress()).toEqual([]);
    await engine.close(2000);
  }, 60_000);

  it('shows a note before the last report until it is taken back, and alone when there is no report', () => {
    const board = new ProgressBoard(() => new Date());
    const run = board.open('job_a', 3);
    run.note('no tokens from gpu1 for 12 s');
    expect(board.list()).toEqual([
      expect.objectContaining({
        index: 3,
        summary: 'no tokens from gpu1 for 12 s',
        note: 'no tokens from gpu1 for 12 s',
      }),
    ]);
    run.report({ summary: 'step 2', figures: { steps: 2 } });
    expect(board.list()[0]).toMatchObject({ summary: 'no tokens from gpu1 for 12 s · step 2', figures: { steps: 2 } });
    // Taken back: the report is as it was; with no report, nothing is left.
    run.note(undefined);
    expect(board.list()).toEqual([expect.objectContaining({ summary: 'step 2' })]);
    expect(board.list()[0]?.note).toBeUndefined();
    const other = board.open('job_a', 4);
    other.note('waiting');
    other.note(undefined);
    expect(board.list().map((p) => p.index)).toEqual([3]);
    run.end();
    run.note('too late');
    expect(board.list()).toEqual([]);
  });
});
