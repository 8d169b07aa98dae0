import { execFileSync } from 'node:child_process';
import { appendFile, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/log.js';
import { StateReader } from '../../src/store/reader.js';
import type { JobMeta } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { connectInMemory, makeTempDir, testConfig, textOf } from '../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A logger that keeps what it is told. */
function listener(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (line: string): number => lines.push(line);
  return { lines, debug() {}, info() {}, warn: keep, error: keep };
}

async function newStore(log: Logger, stateDir?: string): Promise<JobStore> {
  const dir = stateDir ?? (await makeTempDir());
  dirs.push(dir);
  const store = new JobStore(dir, log);
  await store.init();
  return store;
}

const meta = (id: string): JobMeta => ({
  id,
  kind: 'script',
  createdAt: new Date().toISOString(),
  taskCount: 2,
  concurrency: 1,
  options: { worker: 'w.py' },
});
const record = (index: number, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ index, state: 'succeeded', attempt: 1, finishedAt: new Date().toISOString(), ...extra });

describe('a damaged job costs only itself', () => {
  it('shows as damaged with the file and why: {} as job.json, one without createdAt, a FIFO, a symlink', async () => {
    const log = listener();
    const store = await newStore(log);
    const ids = Array.from({ length: 5 }, () => JobStore.newJobId());
    for (const id of ids) await store.createJob(meta(id), [1, 2]);
    const [good, empty, noCreatedAt, fifo, link] = ids as [string, string, string, string, string];
    await writeFile(store.layout.metaFile(empty), '{}');
    const withoutCreatedAt: Partial<JobMeta> = meta(noCreatedAt);
    delete withoutCreatedAt.createdAt;
    await writeFile(store.layout.metaFile(noCreatedAt), JSON.stringify(withoutCreatedAt));
    await rm(store.layout.metaFile(fifo));
    execFileSync('mkfifo', [store.layout.metaFile(fifo)]);
    await rm(store.layout.metaFile(link));
    await symlink('/dev/zero', store.layout.metaFile(link));

    const reader = new StateReader(store.layout.stateDir, log);
    const scan = await reader.scanJobs(true);
    expect(scan.metas.map((m) => m.id)).toEqual([good]);
    const reasons = new Map(scan.damaged.map((d) => [d.id, d]));
    expect(reasons.get(empty)).toMatchObject({ path: store.layout.metaFile(empty), reason: /id: / });
    expect(reasons.get(noCreatedAt)?.reason).toMatch(/createdAt/);
    expect(reasons.get(fifo)?.reason).toMatch(/FIFO/);
    expect(reasons.get(link)?.reason).toMatch(/symlink/);
    // A reader moves nothing.
    expect(await readdir(store.jobDir(fifo))).toContain('job.json');
  });

  it('quarantines: the file moved aside, a note, one log line; every reader then shows it damaged, and no sweep removes it', async () => {
    const log = listener();
    const store = await newStore(log);
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2]);
    await writeFile(store.layout.metaFile(id), '{"id":');
    const [found] = (await store.loadAll()).damaged;
    expect(found).toBeDefined();
    log.lines.length = 0;
    const quarantined = await store.quarantine(found ?? { id, path: '', reason: '' });
    expect(quarantined.moved_to).toMatch(/job\.json\.damaged-/);
    expect(await readFile(quarantined.moved_to ?? '', 'utf8')).toBe('{"id":');
    expect(log.lines).toEqual([expect.stringMatching(new RegExp(`job ${id} quarantined: .*job\\.json: not JSON`))]);
    const reader = new StateReader(store.layout.stateDir, log);
    expect((await reader.scanJobs(true)).damaged).toEqual([
      expect.objectContaining({ id, path: store.layout.metaFile(id), moved_to: quarantined.moved_to }),
    ]);
    // Old and without job.json, like a submit cut short; but it has its note, so it stays.
    const old = new Date(Date.now() - 3600_000);
    await utimes(store.jobDir(id), old, old);
    expect((await store.loadAll()).damaged.map((d) => d.id)).toEqual([id]);
    expect(await readdir(store.jobsDir)).toEqual([id]);
  });

  it('reads a results file that is a FIFO as damaged, at once; skips a line over the cap or without an error message', async () => {
    const log = listener();
    const store = await newStore(log);
    const [fifo, lines] = [JobStore.newJobId(), JobStore.newJobId()];
    for (const id of [fifo, lines]) await store.createJob(meta(id), [1, 2]);
    await rm(store.layout.resultsFile(fifo));
    execFileSync('mkfifo', [store.layout.resultsFile(fifo)]);
    await expect(store.readResults(fifo)).rejects.toThrow(/results\.jsonl is damaged: it is not a regular file/);

    await appendFile(store.layout.resultsFile(lines), `${record(0, { state: 'failed', error: { code: 'X' } })}\n`);
    await appendFile(store.layout.resultsFile(lines), `${'x'.repeat(17 * 1024 * 1024)}`);
    expect(await store.readResults(lines)).toEqual([]);
    await appendFile(store.layout.resultsFile(lines), `tail of the long line\n${record(1)}\n`);
    expect((await store.readResults(lines)).map((r) => r.index)).toEqual([1]);
    expect(log.lines).toEqual([
      expect.stringMatching(/results\.jsonl line 1 is damaged: error\.message/),
      expect.stringMatching(/results\.jsonl line 2 is damaged: over \d+ characters/),
    ]);
  });

  it('never blocks on a FIFO changes.log, and a starting server moves it aside', async () => {
    const log = listener();
    const store = await newStore(log);
    await rm(store.layout.changesFile, { force: true });
    execFileSync('mkfifo', [store.layout.changesFile]);
    expect(store.readChanges(0)).toEqual({ ids: [], offset: 0, reset: false });
    expect(store.changesEnd()).toBe(0);
    const again = await newStore(log, store.layout.stateDir);
    expect(log.lines.some((line) => /changes\.log moved to .*changes\.log\.damaged-/.test(line))).toBe(true);
    const id = JobStore.newJobId();
    await again.createJob(meta(id), [1]);
    expect(again.readChanges(0).ids).toEqual([id]);
  });

  it('never appends through a symlink planted in place of a results file', async () => {
    const store = await newStore(listener());
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2]);
    const outside = path.join(store.layout.stateDir, 'outside.txt');
    await writeFile(outside, 'kept\n');
    await rm(store.layout.resultsFile(id));
    await symlink(outside, store.layout.resultsFile(id));
    await expect(store.appendResult(id, JSON.parse(record(0)) as never)).rejects.toThrow();
    expect(await readFile(outside, 'utf8')).toBe('kept\n');
  });
});

describe('a damaged job through the tools', () => {
  it('list_jobs shows it as damaged with the path; collect_results and resume_job say it is damaged and what to do', async () => {
    const config = await testConfig();
    dirs.push(config.stateDir);
    const store = await newStore(listener(), config.stateDir);
    const [good, badMeta, badInputs] = [JobStore.newJobId(), JobStore.newJobId(), JobStore.newJobId()];
    for (const id of [good, badMeta, badInputs]) await store.createJob(meta(id), [1, 2]);
    await appendFile(store.layout.resultsFile(good), `${record(0)}\n${record(1)}\n`);
    await writeFile(store.layout.metaFile(badMeta), '{}');
    await writeFile(store.layout.inputsFile(badInputs), '{not json\n');
    const conn = await connectInMemory(config);
    try {
      const listed = await conn.call('list_jobs', {});
      expect(listed.isError).toBeFalsy();
      const jobs = (listed.structuredContent as { jobs: Array<{ job_id: string; state: string; damaged?: unknown }> })
        .jobs;
      expect(jobs.find((j) => j.job_id === good)?.state).toBe('succeeded');
      expect(jobs.find((j) => j.job_id === badMeta)).toMatchObject({
        state: 'damaged',
        damaged: { path: store.layout.metaFile(badMeta), reason: expect.stringMatching(/id: /) as unknown },
      });
      const collected = await conn.call('collect_results', { job_ids: [badMeta] });
      expect(collected.isError).toBe(true);
      expect(textOf(collected)).toMatch(/JOB_DAMAGED: Job .* is damaged: .*job\.json: .*remove it/s);
      // Its inputs are read at a resume: then it is quarantined, and said so.
      const resumed = await conn.call('resume_job', { job_id: badInputs });
      expect(resumed.isError).toBe(true);
      expect(textOf(resumed)).toMatch(/JOB_DAMAGED: .*inputs\.jsonl.*not JSON/s);
      expect((await readdir(store.jobDir(badInputs))).some((name) => name.startsWith('inputs.jsonl.damaged-'))).toBe(
        true,
      );
      const again = await conn.call('list_jobs', {});
      const states = (again.structuredContent as { jobs: Array<{ job_id: string; state: string }> }).jobs;
      expect(states.find((j) => j.job_id === badInputs)?.state).toBe('damaged');
      const cancelled = await conn.call('cancel_job', { job_id: badInputs });
      expect(textOf(cancelled)).toMatch(/JOB_DAMAGED/);
    } finally {
      await conn.close();
    }
  });
});
