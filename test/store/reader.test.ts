import { appendFile, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobMeta } from '../../src/engine/types.js';
import type { Logger } from '../../src/log.js';
import { StateReader } from '../../src/store/reader.js';
import { JobStore } from '../../src/store/store.js';
import { makeTempDir } from '../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A logger that keeps its warnings. */
function listener(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug() {}, info() {}, warn: (line) => warnings.push(line), error() {} };
}

async function newStore(log: Logger): Promise<JobStore> {
  const dir = await makeTempDir();
  dirs.push(dir);
  const store = new JobStore(dir, log);
  await store.init();
  return store;
}

const meta = (id: string, createdAt = new Date().toISOString()): JobMeta => ({
  id,
  kind: 'script',
  createdAt,
  taskCount: 3,
  concurrency: 1,
  options: { worker: 'w.py' },
});

describe('StateReader', () => {
  it('shows a job whose job.json is damaged as damaged, saying which file and why, once; it does not remove it', async () => {
    const log = listener();
    const store = await newStore(log);
    const [good, bad, notJson] = [JobStore.newJobId(), JobStore.newJobId(), JobStore.newJobId()];
    for (const id of [good, bad, notJson]) await store.createJob(meta(id), [1, 2, 3]);
    await writeFile(store.layout.metaFile(bad), JSON.stringify({ ...meta(bad), taskCount: 'three' }));
    await writeFile(store.layout.metaFile(notJson), '{"id": "');
    const old = new Date(Date.now() - 3600_000);
    await utimes(store.jobDir(bad), old, old);

    expect((await store.loadAll()).metas.map((m) => m.id)).toEqual([good]);
    expect(log.warnings).toHaveLength(2);
    expect(log.warnings.find((line) => line.includes(bad))).toMatch(/job\.json: taskCount: .*number/);
    expect(log.warnings.find((line) => line.includes(notJson))).toMatch(/job\.json: not JSON/);
    expect((await readdir(store.jobsDir)).sort()).toEqual([good, bad, notJson].sort());
    await expect(store.readMeta(bad)).rejects.toThrow(/job\.json is damaged/);

    // A reader polling (the dashboard) hears of it once per version of the file.
    const reader = new StateReader(store.layout.stateDir, log);
    log.warnings.length = 0;
    for (let i = 0; i < 3; i++) expect((await reader.scanJobs(true)).metas.map((m) => m.id)).toEqual([good]);
    expect(log.warnings).toHaveLength(2);
  });

  it('skips a results line that is not a record, naming the file and the line, and reads on', async () => {
    const log = listener();
    const store = await newStore(log);
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2, 3]);
    const record = (index: number): string =>
      JSON.stringify({ index, state: 'succeeded', attempt: 1, finishedAt: 't' });
    await appendFile(
      store.layout.resultsFile(id),
      `${record(0)}\n{"index":1,"state":"done"}\nnot json\n${record(2)}\n`,
    );
    expect((await store.readResults(id)).map((r) => r.index)).toEqual([0, 2]);
    expect(log.warnings).toEqual([
      expect.stringMatching(/results\.jsonl line 2 is damaged: state: /),
      expect.stringMatching(/results\.jsonl line 3 is damaged: not JSON/),
    ]);
    // Lines keep their numbers across incremental reads.
    await appendFile(store.layout.resultsFile(id), '[]\n');
    expect((await store.readResults(id)).map((r) => r.index)).toEqual([0, 2]);
    expect(log.warnings[2]).toMatch(/results\.jsonl line 5 is damaged/);
    expect([...(await store.latestResults(id)).keys()]).toEqual([0, 2]);
  });

  it("re-reads a job's metadata only once its file changed, when asked for the cached scan", async () => {
    const store = await newStore(listener());
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1]);
    const reader = new StateReader(store.layout.stateDir, listener());
    const [first] = (await reader.scanJobs(true)).metas;
    expect((await reader.scanJobs(true)).metas[0]).toBe(first);
    // Uncached scans give the engine its own objects to change.
    expect((await reader.scanJobs()).metas[0]).not.toBe(first);
    await store.writeMeta({ ...meta(id), label: 'renamed' });
    await utimes(store.layout.metaFile(id), new Date(), new Date(Date.now() + 5000));
    expect((await reader.knownMeta(id))?.label).toBe('renamed');
  });

  it('reads a damaged owner claim as one still being written, and says so', async () => {
    const log = listener();
    const store = await newStore(log);
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1], { pid: 10 });
    expect(await store.readClaim(id)).toEqual({ generation: 1, pid: 10 });
    await writeFile(store.layout.ownerFile(id, 2), '{"pid":"ten"}');
    expect(await store.readClaim(id)).toEqual({ generation: 2, pid: -1 });
    expect(log.warnings[0]).toMatch(/owner\.2 is damaged: pid: /);
    await writeFile(store.layout.ownerFile(id, 3), '');
    expect(await store.readClaim(id)).toEqual({ generation: 3, pid: -1 });
  });

  it('names the line of an input that is not JSON', async () => {
    const store = await newStore(listener());
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2]);
    await appendFile(store.layout.inputsFile(id), '{oops\n');
    await expect(store.readInputs(id)).rejects.toThrow(/inputs\.jsonl line 3 is damaged: not JSON/);
  });

  it('finds the owner in the latest claim, or in the metadata of a job from before claims', async () => {
    const store = await newStore(listener());
    const [claimed, older] = [JobStore.newJobId(), JobStore.newJobId()];
    await store.createJob({ ...meta(claimed), ownerPid: 10, ownerGeneration: 1 }, [1], { pid: 10, start: 'a' });
    await store.writeClaim(claimed, { generation: 2, pid: 20, start: 'b' });
    expect(await store.ownerOf(await store.readMeta(claimed))).toEqual({ generation: 2, pid: 20, start: 'b' });
    await store.createJob({ ...meta(older), ownerPid: 30, ownerStart: 'c' }, [1]);
    expect(await store.ownerOf(await store.readMeta(older))).toEqual({ generation: 0, pid: 30, start: 'c' });
  });

  it('reads the live files of servers that beat recently, skipping one that is not a live file', async () => {
    const store = await newStore(listener());
    const { layout } = store;
    const now = Date.now();
    await rm(layout.liveDir, { recursive: true, force: true });
    await mkdir(layout.liveDir);
    const live = (pid: number, at: number): string =>
      JSON.stringify({ pid, version: '1', started_at: '', heartbeat_at: new Date(at).toISOString(), pools: {} });
    await writeFile(layout.liveFile(1), live(1, now));
    await writeFile(layout.liveFile(2), live(2, now - 60_000));
    await writeFile(layout.liveFile(3), '{"pid":3}');
    expect((await store.liveServers(now)).map((server) => server.pid)).toEqual([1]);
  });
});
