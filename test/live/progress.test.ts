import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { silentLogger } from '../../src/log.js';
import { liveControl } from '../../src/server-live.js';
import { StateLayout } from '../../src/store/layout.js';
import { StateReader } from '../../src/store/reader.js';
import { JobStore } from '../../src/store/store.js';
import { SteppingPool } from '../helpers/stepping-pool.js';

const dirs: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const done of cleanups.splice(0)) await done();
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
async function stateDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'monitor-live-progress-'));
  dirs.push(dir);
  return dir;
}
const liveTasks = async (dir: string) =>
  (await new StateReader(dir, silentLogger).liveServers(Date.now())).flatMap((server) => server.tasks ?? []);

describe("running tasks' progress in the live file", () => {
  it("goes from a pool's report through the engine into this server's live file, and out of it when the task ends", async () => {
    const dir = await stateDir();
    const pool = new SteppingPool(2);
    const engine = new Engine({
      store: new JobStore(dir, silentLogger),
      pools: [pool],
      log: silentLogger,
      retentionDays: 7,
    });
    await engine.init();
    const live = liveControl({
      stateDir: dir,
      version: '0.0.0',
      engine,
      kinds: [],
      ownership: { pid: 4343, isAlive: () => true },
      log: silentLogger,
    });
    await live.start();
    cleanups.push(async () => {
      await live.close();
      await engine.close(2000);
    });
    const transcript = path.join(engine.outputDir('job_x'), '0.transcript.jsonl');
    const job = await engine.submit({
      kind: 'steps',
      inputs: [
        {
          steps: 2,
          update: {
            summary: 'step 2 · read_file src/a.ts 1–80',
            figures: { steps: 2, last_tool: 'read_file' },
            transcript,
          },
        },
      ],
      options: {},
      concurrency: 1,
    });
    await expect.poll(() => liveTasks(dir), { timeout: 10_000 }).toHaveLength(1);
    expect(await liveTasks(dir)).toEqual([
      {
        job_id: job.id,
        index: 0,
        summary: 'step 2 · read_file src/a.ts 1–80',
        figures: { steps: 2, last_tool: 'read_file' },
        transcript,
        updated_at: expect.stringMatching(/^\d{4}-/) as string,
      },
    ]);
    pool.finishAll();
    expect(await engine.waitFor([job.id], 10_000)).toBe(true);
    await expect.poll(() => liveTasks(dir), { timeout: 10_000 }).toEqual([]);
  });

  it("is read bounded from another server's file: 64 entries at most, texts cut, bad entries left out (not the server)", async () => {
    const dir = await stateDir();
    const layout = new StateLayout(dir);
    await mkdir(layout.liveDir, { recursive: true });
    const jobId = `job_${'A'.repeat(22)}`;
    const now = new Date().toISOString();
    const good = (index: number) => ({ job_id: jobId, index, summary: `step ${index}`, updated_at: now });
    await writeFile(
      layout.liveFile(555),
      JSON.stringify({
        pid: 555,
        version: '0',
        started_at: now,
        heartbeat_at: now,
        pools: {},
        tasks: [
          {
            ...good(0),
            summary: '<img src=x onerror=alert(1)>'.repeat(100),
            figures: { a: 1, b: 'x'.repeat(500), c: { deep: 1 } },
          },
          { ...good(1), job_id: '../../etc' },
          { ...good(2), index: -1 },
          { ...good(3), summary: 7 },
          { ...good(4), transcript: 'p'.repeat(5000) },
          'not an object',
          null,
          ...Array.from({ length: 200 }, (_, i) => good(10 + i)),
        ],
      }),
    );
    const [server] = await new StateReader(dir, silentLogger).liveServers(Date.now());
    expect(server?.pid).toBe(555);
    const tasks = server?.tasks ?? [];
    // The first 64 entries are looked at; of those, the 5 bad ones are left out.
    expect(tasks).toHaveLength(59);
    expect(tasks[0]?.summary).toHaveLength(200);
    expect(tasks[0]?.figures).toEqual({ a: 1, b: 'x'.repeat(120) });
    expect(tasks[1]).toEqual({ ...good(4) });
    expect(tasks.map((task) => task.index).slice(2, 4)).toEqual([10, 11]);
  });
});
