import { execFileSync } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DashboardData } from '../../src/dashboard/data.js';
import type { JobMeta, JobTotals } from '../../src/engine/types.js';
import { LivePublisher } from '../../src/live/publisher.js';
import { type Logger, silentLogger } from '../../src/log.js';
import type { TaskRecord } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { llmTotals } from '../../src/pools/llm/totals.js';
import { useTempStores } from '../helpers/store.js';

const newStore = useTempStores();

const meta = (id: string, fields: Partial<JobMeta> = {}): JobMeta => ({
  id,
  kind: 'script',
  createdAt: new Date(Date.now() - 10_000).toISOString(),
  taskCount: 3,
  concurrency: 2,
  options: {},
  ...fields,
});

/** A kind's totals as the dashboard gets them from the registry: here the tokens of a record, summed. */
const unitTotals = new Map<string, JobTotals<unknown>>([
  [
    'script',
    {
      add: (sum, value) => {
        const v = value as { tokens_in?: number; tokens_out?: number };
        return ((sum as number | undefined) ?? 0) + (v.tokens_in ?? 0) + (v.tokens_out ?? 0);
      },
      view: (sum) => ({ fields: { units: sum }, text: `${String(sum)} units` }),
    },
  ],
]);

const done = (index: number, fields: Partial<TaskRecord> = {}): TaskRecord => ({
  index,
  state: 'succeeded',
  attempt: 1,
  finishedAt: new Date().toISOString(),
  ...fields,
});

describe('DashboardData', () => {
  it('lists every readable job, and a damaged one as damaged with its file, said once in the log', async () => {
    const store = await newStore();
    const [good, bad] = [JobStore.newJobId(), JobStore.newJobId()];
    await store.createJob(meta(good), [1, 2, 3]);
    await store.createJob(meta(bad), [1, 2, 3]);
    await writeFile(store.layout.metaFile(bad), '{"id": 7}');
    const warnings: string[] = [];
    const log: Logger = { ...silentLogger, warn: (line) => warnings.push(line) };
    const data = new DashboardData(store.layout.stateDir, () => false, log);
    const { jobs } = await data.snapshot(Date.now());
    expect(jobs.map((job) => [job.id, job.state])).toEqual([
      [good, 'interrupted'],
      [bad, 'damaged'],
    ]);
    expect(jobs[1]?.damaged).toEqual({ path: store.layout.metaFile(bad), reason: expect.stringMatching(/id: /) });
    expect(jobs[1]?.next).toMatch(/Inspect the folder .* and remove it/);
    await data.snapshot(Date.now());
    expect(warnings).toEqual([expect.stringContaining(`${bad}`)]);
    expect(warnings[0]).toMatch(/job\.json: id: /);
    expect((await data.tasks(bad))?.job.state).toBe('damaged');
    // Nothing moved: readers only show.
    expect(await readFile(store.layout.metaFile(bad), 'utf8')).toBe('{"id": 7}');
  });

  it('shows a job whose server is gone as interrupted with the resume call; a running one with its ETA', async () => {
    const store = await newStore();
    const [gone, running] = [JobStore.newJobId(), JobStore.newJobId()];
    await store.createJob(meta(gone, { ownerPid: 11 }), [1, 2, 3], { pid: 11 });
    await store.createJob(meta(running, { ownerPid: 22 }), [1, 2, 3], { pid: 22 });
    for (const id of [gone, running])
      await store.appendResults(id, [
        done(0, { value: { text: 'x'.repeat(500), tokens_in: 10, tokens_out: 4 } }),
        done(1, { state: 'failed', error: { code: 'NON_ZERO_EXIT', message: 'exit 1' } }),
      ]);
    const data = new DashboardData(store.layout.stateDir, (pid) => pid === 22, silentLogger, unitTotals);
    const jobs = new Map((await data.snapshot(Date.now())).jobs.map((job) => [job.id, job]));
    expect(jobs.get(gone)).toMatchObject({
      state: 'interrupted',
      succeeded: 1,
      failed: 1,
      pending: 1,
      owner: { pid: 11, alive: false },
      failures: [{ code: 'NON_ZERO_EXIT', count: 1, example: 'exit 1' }],
      totals: { fields: { units: 14 }, text: '14 units' },
      next: expect.stringMatching(/^Its server \(pid 11\) is gone\. resume_job with \{"job_id":"/),
    });
    expect(jobs.get(running)).toMatchObject({ state: 'running', owner: { pid: 22, alive: true } });
    expect(jobs.get(running)?.eta_ms).toBeGreaterThan(0);
    expect(jobs.get(running)?.next).toBeUndefined();

    const detail = await data.tasks(gone);
    expect(detail?.tasks).toEqual([
      expect.objectContaining({ index: 0, state: 'succeeded', preview: `${'x'.repeat(400)}…` }),
      expect.objectContaining({ index: 1, state: 'failed', error: { code: 'NON_ZERO_EXIT', message: 'exit 1' } }),
      { index: 2, state: 'interrupted' },
    ]);
  });

  it('shows a job in flight as running from its first start, not from its first result; never more running than its concurrency', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id, { ownerPid: 22, taskCount: 4 }), [1, 2, 3, 4], { pid: 22 });
    const data = new DashboardData(store.layout.stateDir, (pid) => pid === 22, silentLogger);
    const job = async (): Promise<unknown> => (await data.snapshot(Date.now())).jobs[0];
    expect(await job()).toMatchObject({ state: 'queued', running: 0, pending: 4 });
    // Its server notes each start in runs.log: the first task runs, no result yet.
    await store.appendRun(id, 0);
    await store.flush(id);
    expect(await job()).toMatchObject({ state: 'running', running: 1, pending: 4 });
    // Starts of runs cut off earlier (a crash) stay in the log: more starts than slots are not more running.
    for (const index of [1, 2, 3]) await store.appendRun(id, index);
    await store.flush(id);
    expect(await job()).toMatchObject({ state: 'running', running: 2, pending: 4 });
    await store.appendResult(id, done(0));
    expect(await job()).toMatchObject({ state: 'running', running: 2, succeeded: 1, pending: 3 });
    expect((await data.tasks(id))?.tasks.map((t) => t.state)).toEqual(['succeeded', 'running', 'running', 'pending']);
  });

  it('shows a job resumed from cancelled whose server then died as interrupted, not cancelled', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id, { ownerPid: 11 }), [1, 2, 3], { pid: 11 });
    const cancelled = (index: number): TaskRecord =>
      done(index, { state: 'cancelled', error: { code: 'CANCELLED', message: 'Cancelled before it started.' } });
    await store.appendResults(id, [done(0), cancelled(1), cancelled(2)]);
    // The resume queued #1 and #2 again over their records; its server died before either was recorded.
    await store.appendRequeued(id, [1, 2]);
    await store.flush(id);
    const data = new DashboardData(store.layout.stateDir, () => false, silentLogger);
    expect((await data.snapshot(Date.now())).jobs[0]).toMatchObject({
      state: 'interrupted',
      succeeded: 1,
      cancelled: 0,
      pending: 2,
    });
    expect((await data.tasks(id))?.tasks.map((t) => t.state)).toEqual(['succeeded', 'interrupted', 'interrupted']);
  });

  it("lists a job's failed tasks alone when asked: three failures among 600 tasks, past the first page too", async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    const inputs = Array.from({ length: 600 }, (_, i) => i);
    await store.createJob(meta(id, { taskCount: 600, finishedAt: new Date().toISOString() }), inputs);
    const failing = new Set([5, 450, 599]);
    await store.appendResults(
      id,
      inputs.map((i) =>
        failing.has(i) ? done(i, { state: 'failed', error: { code: 'NON_ZERO_EXIT', message: `exit ${i}` } }) : done(i),
      ),
    );
    const data = new DashboardData(store.layout.stateDir, () => false);
    const page = await data.tasks(id, 0, 200);
    expect(page?.total).toBe(600);
    expect(page?.tasks.filter((t) => t.state === 'failed').map((t) => t.index)).toEqual([5]);
    const failed = await data.tasks(id, 0, 200, 'failed');
    expect(failed?.total).toBe(3);
    expect(failed?.tasks.map((t) => [t.index, t.state, t.error?.message])).toEqual([
      [5, 'failed', 'exit 5'],
      [450, 'failed', 'exit 450'],
      [599, 'failed', 'exit 599'],
    ]);
    expect((await data.tasks(id, 1, 1, 'failed'))?.tasks.map((t) => t.index)).toEqual([450]);
  });

  it('says why a state directory shows no job: not there, not a folder, empty, not a state directory, none yet', async () => {
    const store = await newStore();
    const dir = store.layout.stateDir;
    const note = async (stateDir: string): Promise<string | undefined> =>
      (await new DashboardData(stateDir, () => false).snapshot(Date.now())).state_dir_note;
    expect(await note(dir)).toBe('no job there yet');
    expect(await note(path.join(dir, 'nowhere'))).toBe('the folder does not exist');
    await writeFile(path.join(dir, 'a-file'), 'x');
    expect(await note(path.join(dir, 'a-file'))).toBe('it is not a folder');
    await mkdir(path.join(dir, 'empty'));
    expect(await note(path.join(dir, 'empty'))).toBe('the folder is empty');
    await mkdir(path.join(dir, 'other'));
    await writeFile(path.join(dir, 'other', 'notes.txt'), 'x');
    expect(await note(path.join(dir, 'other'))).toBe('nothing of monitor-mcp in it: is it a state directory?');
    await store.createJob(meta(JobStore.newJobId()), [1]);
    expect(await note(dir)).toBeUndefined();
  });

  it('reads only what was appended since the last poll', async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id, { finishedAt: new Date().toISOString() }), [1, 2, 3]);
    const data = new DashboardData(store.layout.stateDir, () => false);
    await store.appendResult(id, done(0));
    expect((await data.snapshot(Date.now())).jobs[0]).toMatchObject({ succeeded: 1, pending: 2 });
    await store.appendResults(id, [done(1), done(0, { attempt: 2, state: 'failed' })]);
    expect((await data.snapshot(Date.now())).jobs[0]).toMatchObject({ succeeded: 1, failed: 1, pending: 1 });
  });

  it("draws every kind's live cards from the servers' live files, leaving out what is no card", async () => {
    const store = await newStore();
    const live = new LivePublisher({
      stateDir: store.layout.stateDir,
      pid: process.pid,
      version: '0.0.0',
      log: silentLogger,
      intervalMs: 3_600_000,
      figures: () => ({
        llm: [{ name: 'lmstudio', detail: 'qwen3-8b', busy: 1, limit: 4, waiting: 2 }],
        script: [
          {
            name: 'scripts',
            busy: 3,
            limit: 8,
            detail: 'x'.repeat(5000),
            rate: { unit: 'tasks/s', series: [...Array.from({ length: 500 }, (_, i) => [i, 1]), ['bad', 1], [1]] },
          },
          { name: 'huge', busy: 0, limit: 1e9 },
          { busy: 'x' },
          { name: 'negative', busy: -1, limit: 4 },
        ],
        http: { not: 'a list' },
      }),
      handles: () => Promise.resolve(false),
      act: () => Promise.resolve({ ok: true, message: '', by_pid: process.pid }),
    });
    await live.start();
    try {
      const { capacity } = await new DashboardData(store.layout.stateDir, () => true).snapshot(Date.now());
      expect(capacity).toEqual([
        { kind: 'llm', server_pid: process.pid, name: 'lmstudio', detail: 'qwen3-8b', busy: 1, limit: 4, waiting: 2 },
        {
          kind: 'script',
          server_pid: process.pid,
          name: 'scripts',
          busy: 3,
          limit: 8,
          detail: 'x'.repeat(200),
          // The last 120 points are kept, less the two broken ones among them.
          rate: { unit: 'tasks/s', series: Array.from({ length: 118 }, (_, i) => [382 + i, 1]) },
        },
      ]);
    } finally {
      await live.close();
    }
  });

  it("reads no live file that is not a small regular file: one too large, a FIFO or a symlink is no server's", async () => {
    const store = await newStore();
    const { layout } = store;
    await mkdir(layout.liveDir, { recursive: true });
    const beat = (pid: number): string =>
      JSON.stringify({
        pid,
        version: '0',
        started_at: new Date().toISOString(),
        heartbeat_at: new Date().toISOString(),
        pools: { script: [{ name: `server ${pid}`, busy: 0, limit: 2 }] },
      });
    await writeFile(layout.liveFile(101), beat(101));
    await writeFile(
      layout.liveFile(102),
      beat(102).replace('"pools"', `"pad":"${'x'.repeat(2 * 1024 * 1024)}","pools"`),
    );
    execFileSync('mkfifo', [layout.liveFile(103)]);
    const target = path.join(layout.stateDir, 'elsewhere.json');
    await writeFile(target, beat(104));
    await symlink(target, layout.liveFile(104));
    // Each read is bounded and never blocks: only the good server's card comes back.
    const { capacity, servers } = await new DashboardData(layout.stateDir, () => true).snapshot(Date.now());
    expect(servers.map((server) => server.pid)).toEqual([101]);
    expect(capacity.map((card) => card.name)).toEqual(['server 101']);
  });

  it("shows an LLM job's verdicts in its totals and marks each unverified answer with its checks' reasons", async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    await store.createJob(meta(id, { kind: 'llm', taskCount: 2, finishedAt: new Date().toISOString() }), [1, 2]);
    await store.appendResults(id, [
      done(0, {
        value: { text: 'ok', tokens_in: 5, tokens_out: 5, verified: true, checks: [{ name: 'citations', ok: true }] },
      }),
      done(1, {
        value: {
          text: 'see a.ts:999',
          tokens_in: 5,
          tokens_out: 5,
          verified: false,
          checks: [
            { name: 'citations', ok: false, reason: '1 of 1 citation(s) do not hold: a.ts:999 (file has 3 lines)' },
          ],
          extra_requests: { reask: 1 },
        },
      }),
    ]);
    const data = new DashboardData(store.layout.stateDir, () => false, silentLogger, new Map([['llm', llmTotals]]));
    const job = (await data.snapshot(Date.now())).jobs[0];
    expect(job?.totals?.text).toContain('1 verified, 1 unverified; 1 extra request(s) on checks (1 re-ask');
    const tasks = (await data.tasks(id))?.tasks ?? [];
    expect(tasks[0]?.unverified).toBeUndefined();
    expect(tasks[1]?.unverified).toBe('citations: 1 of 1 citation(s) do not hold: a.ts:999 (file has 3 lines)');
  });

  it("keeps a running job's token rate over the time to its latest result: it does not sink while only time passes", async () => {
    const store = await newStore();
    const id = JobStore.newJobId();
    const created = Date.now() - 60_000;
    await store.createJob(
      meta(id, { kind: 'llm', createdAt: new Date(created).toISOString(), ownerPid: 77 }),
      [1, 2, 3],
    );
    // 1000 tokens out 10 s after the start: 100 tok/s, however long it then waits for the next one.
    await store.appendResult(
      id,
      done(0, { finishedAt: new Date(created + 10_000).toISOString(), value: { tokens_in: 10, tokens_out: 1000 } }),
    );
    const data = new DashboardData(
      store.layout.stateDir,
      (pid) => pid === 77,
      silentLogger,
      new Map([['llm', llmTotals]]),
    );
    const texts = [];
    for (const later of [0, 20_000, 600_000])
      texts.push((await data.snapshot(Date.now() + later)).jobs[0]?.totals?.text);
    expect(texts).toEqual(Array(3).fill('1010 tokens processed locally (10 in, 1000 out at 100 tok/s out)'));
  });
});
