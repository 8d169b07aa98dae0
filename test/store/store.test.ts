import { appendFile, mkdir, readdir, readFile, rm, utimes } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobMeta } from '../../src/engine/types.js';
import { silentLogger } from '../../src/log.js';
import { writeFileAtomic } from '../../src/store/atomic.js';
import { JobStore } from '../../src/store/store.js';
import { useTempStores } from '../helpers/store.js';

const newStore = useTempStores();

const meta = (id: string): JobMeta => ({
  id,
  kind: 'script',
  createdAt: new Date().toISOString(),
  taskCount: 3,
  concurrency: 1,
  options: { worker: 'w.py' },
});

describe('JobStore', () => {
  it('writes atomically and leaves no temp files behind', async () => {
    const dir = path.join((await newStore()).layout.stateDir, 'atomic');
    await mkdir(dir);
    const file = path.join(dir, 'a.json');
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => writeFileAtomic(file, JSON.stringify({ i, pad: 'x'.repeat(10_000) }))),
    );
    expect(JSON.parse(await readFile(file, 'utf8'))).toHaveProperty('pad');
    expect(await readdir(dir)).toEqual(['a.json']);
  });

  it('round-trips a job: inputs, results in finish order, incremental reads', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [{ args: ['a'] }, { args: ['b'] }, null]);
    expect(await store.readInputs(id)).toEqual([{ args: ['a'] }, { args: ['b'] }, null]);
    await store.appendResult(id, { index: 2, state: 'succeeded', attempt: 1, finishedAt: 't' });
    expect((await store.readResults(id)).map((r) => r.index)).toEqual([2]);
    await store.appendResults(id, [
      { index: 0, state: 'failed', attempt: 1, finishedAt: 't', error: { code: 'NON_ZERO_EXIT', message: 'exit 1' } },
      { index: 1, state: 'cancelled', attempt: 1, finishedAt: 't' },
    ]);
    expect((await store.readResults(id)).map((r) => r.index)).toEqual([2, 0, 1]);
    expect((await store.loadAll()).metas.map((m) => m.id)).toEqual([id]);
  });

  it('ignores a torn line and picks up the rest once it is completed', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2, 3]);
    const file = path.join(store.jobDir(id), 'results.jsonl');
    await appendFile(file, '{"index":0,"state":"succeeded","attempt":1,"finishedAt":"t"}\n{"index":1,"sta');
    expect((await store.readResults(id)).map((r) => r.index)).toEqual([0]);
    await appendFile(file, 'te":"succeeded","attempt":1,"finishedAt":"t"}\n');
    expect((await store.readResults(id)).map((r) => r.index)).toEqual([0, 1]);
  });

  it('ends a torn last line before appending, so the next record is not lost', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2, 3]);
    await appendFile(
      path.join(store.jobDir(id), 'results.jsonl'),
      '{"index":0,"state":"succeeded","attempt":1,"finishedAt":"t"}\n{"index":1,"sta',
    );
    const after = new JobStore(path.dirname(store.jobsDir), silentLogger);
    await after.appendResult(id, { index: 1, state: 'succeeded', attempt: 2, finishedAt: 't' });
    expect((await after.readResults(id)).map((r) => [r.index, r.attempt])).toEqual([
      [0, 1],
      [1, 2],
    ]);
  });

  it('concurrent reads of one job parse each record once', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2, 3]);
    await store.appendResults(
      id,
      [0, 1, 2].map((index) => ({ index, state: 'succeeded' as const, attempt: 1, finishedAt: 't' })),
    );
    const reads = await Promise.all([store.readResults(id), store.readResults(id), store.readResults(id)]);
    for (const records of reads) expect(records.map((r) => r.index)).toEqual([0, 1, 2]);
  });

  it('sweeps a job folder whose submit never finished, but only when not read-only', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1]);
    await rm(path.join(store.jobDir(id), 'job.json'));
    expect(await store.loadAllReadOnly()).toEqual([]);
    expect(await readdir(store.jobsDir)).toEqual([id]);
    // A young folder may be a submit another server is writing: left alone.
    expect((await store.loadAll()).metas).toEqual([]);
    expect(await readdir(store.jobsDir)).toEqual([id]);
    const old = new Date(Date.now() - 3600_000);
    await utimes(store.jobDir(id), old, old);
    expect((await store.loadAll()).metas).toEqual([]);
    expect(await readdir(store.jobsDir)).toEqual([]);
  });

  it('gives each ownership generation to exactly one of many servers taking it at once', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2, 3], { pid: 10, start: 'a' });
    expect(await store.readClaim(id)).toEqual({ generation: 1, pid: 10, start: 'a' });
    // A second store on the same directory stands for another server process.
    const other = new JobStore(path.dirname(store.jobsDir), silentLogger);
    const wins = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).writeClaim(id, { generation: 2, pid: 100 + i })),
    );
    expect(wins.filter(Boolean)).toHaveLength(1);
    const winner = 100 + wins.indexOf(true);
    expect(await other.readClaim(id)).toEqual({ generation: 2, pid: winner });
    // Only the latest generation stays.
    expect((await readdir(store.jobDir(id))).filter((name) => name.startsWith('owner.'))).toEqual(['owner.2']);
  });

  it('tells other servers which jobs changed, through a shared change log', async () => {
    const store = await newStore();
    const other = new JobStore(path.dirname(store.jobsDir), silentLogger);
    const start = await other.changesEnd();
    const [a, b] = [JobStore.newJobId(), JobStore.newJobId()];
    await store.createJob(meta(a), [1], { pid: 1 });
    await store.createJob(meta(b), [1], { pid: 1 });
    await store.writeMeta({ ...meta(a), finishedAt: new Date().toISOString() });
    const first = await other.readChanges(start);
    expect(first).toMatchObject({ ids: [a, b], reset: false });
    expect(await other.readChanges(first.offset)).toEqual({ ids: [], offset: first.offset, reset: false });
    // A half-written line is left for the next read.
    await appendFile(path.join(path.dirname(store.jobsDir), 'changes.log'), b.slice(0, 5));
    expect((await other.readChanges(first.offset)).ids).toEqual([]);
    await appendFile(path.join(path.dirname(store.jobsDir), 'changes.log'), `${b.slice(5)}\n`);
    expect((await other.readChanges(first.offset)).ids).toEqual([b]);
    // A log started afresh (a server rotated it) makes readers look at every folder once.
    await rm(path.join(path.dirname(store.jobsDir), 'changes.log'));
    expect(await other.readChanges(first.offset)).toEqual({ ids: [], offset: 0, reset: true });
  });

  it('counts every run of a task, including one cut off before its record', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id), [1, 2, 3]);
    await Promise.all([store.appendRun(id, 0), store.appendRun(id, 2), store.appendRun(id, 0)]);
    await appendFile(path.join(store.jobDir(id), 'runs.log'), '2');
    expect([...(await store.readRuns(id))].sort()).toEqual([
      [0, 2],
      [2, 1],
    ]);
    // The next server (the one that wrote the torn line crashed) ends it before its first line, so
    // it counts from then on (one extra attempt at worst, never a lost line).
    await new JobStore(path.dirname(store.jobsDir), silentLogger).appendRun(id, 1);
    expect([...(await store.readRuns(id))].sort()).toEqual([
      [0, 2],
      [1, 1],
      [2, 2],
    ]);
  });
});
