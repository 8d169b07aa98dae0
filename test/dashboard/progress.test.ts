import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DashboardData } from '../../src/dashboard/data.js';
import { Dashboard } from '../../src/dashboard/http.js';
import { LivePublisher } from '../../src/live/publisher.js';
import { silentLogger } from '../../src/log.js';
import type { JobMeta, LiveTaskProgress, TaskRecord } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { TranscriptRefused } from '../../src/store/transcript.js';

/** A running job's progress and transcripts as the dashboard shows them (its data, and its HTTP route without a browser). */

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const done of cleanups.splice(0).reverse()) await done();
});

const OWNER = 4242;
const jsonl = (lines: unknown[]): string => lines.map((line) => `${JSON.stringify(line)}\n`).join('');

/**
 * A job of 4 tasks run by a live server (pid 4242) that publishes the progress of tasks 0 and 1;
 * task 2 finished with a transcript, task 3 is queued.
 */
async function runningJob(progress: (out: string, jobId: string) => LiveTaskProgress[] = defaultProgress) {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'monitor-dashboard-progress-'));
  cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
  const store = new JobStore(stateDir, silentLogger);
  await store.init();
  const id = JobStore.newJobId();
  const meta: JobMeta = {
    id,
    kind: 'llm',
    createdAt: new Date(Date.now() - 5000).toISOString(),
    taskCount: 4,
    concurrency: 2,
    ownerPid: OWNER,
  };
  await store.createJob(meta, [1, 2, 3, 4], { pid: OWNER });
  const out = store.outputDir(id);
  await writeFile(path.join(out, '0.transcript.jsonl'), jsonl(transcriptLines));
  await writeFile(
    path.join(out, '2.transcript.jsonl'),
    jsonl([{ type: 'finish', step: 3, answer: 'done', cut: false }]),
  );
  const record: TaskRecord = {
    index: 2,
    state: 'succeeded',
    attempt: 1,
    finishedAt: new Date(Date.now() - 1000).toISOString(),
    value: { text: 'the answer' },
    files: { transcript: path.join(out, '2.transcript.jsonl') },
  };
  await store.appendResult(id, record);
  const tasks = progress(out, id);
  const live = new LivePublisher({
    stateDir,
    pid: OWNER,
    version: '0.0.0',
    log: silentLogger,
    figures: () => ({}),
    tasks: () => tasks,
    handles: () => Promise.resolve(false),
    act: () => Promise.resolve({ ok: true, message: '', by_pid: OWNER }),
  });
  await live.start();
  cleanups.push(() => live.close());
  const data = new DashboardData(stateDir, (pid) => pid === OWNER);
  return { stateDir, store, id, out, data, tasks };
}

const transcriptLines = [
  { type: 'start', task: 'where is the token checked?', model: 'qwen', tools: ['grep', 'finish'] },
  { type: 'tool', step: 1, call_id: 'c1', name: 'grep', args: { pattern: 'token' }, ok: true, summary: 'grep /token/' },
];

function defaultProgress(out: string, jobId: string): LiveTaskProgress[] {
  const at = (ms: number) => new Date(Date.now() + ms).toISOString();
  return [
    {
      job_id: jobId,
      index: 0,
      summary: 'step 1 · grep /token/ in src · 0.8k tokens',
      figures: { steps: 1, tokens_in: 812, last_tool: 'grep' },
      transcript: path.join(out, '0.transcript.jsonl'),
      updated_at: at(0),
    },
    { job_id: jobId, index: 1, summary: 'step 4 · outline src/a.ts', updated_at: at(1) },
  ];
}

describe("a running task's progress on the dashboard", () => {
  it("shows the job's latest report and each running task's progress; the tasks with a transcript say so", async () => {
    const { data, id } = await runningJob();
    const [job] = (await data.snapshot(Date.now())).jobs;
    expect(job).toMatchObject({
      id,
      state: 'running',
      progress: { tasks: 2, index: 1, latest: 'step 4 · outline src/a.ts' },
    });
    const detail = await data.tasks(id);
    expect(detail?.tasks).toEqual([
      {
        index: 0,
        state: 'running',
        progress: {
          summary: 'step 1 · grep /token/ in src · 0.8k tokens',
          figures: { steps: 1, tokens_in: 812, last_tool: 'grep' },
          updated_at: expect.any(String) as string,
        },
        transcript: true,
      },
      {
        index: 1,
        state: 'running',
        progress: { summary: 'step 4 · outline src/a.ts', updated_at: expect.any(String) as string },
        transcript: false,
      },
      expect.objectContaining({ index: 2, state: 'succeeded', preview: 'the answer', transcript: true }),
      { index: 3, state: 'pending' },
    ]);
  });

  it('shows a job as running, not queued, from its first report on (before any task has a record)', async () => {
    const stateDir = await mkdtemp(path.join(tmpdir(), 'monitor-dashboard-progress-'));
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const store = new JobStore(stateDir, silentLogger);
    await store.init();
    const id = JobStore.newJobId();
    const createdAt = new Date().toISOString();
    await store.createJob({ id, kind: 'llm', createdAt, taskCount: 1, concurrency: 1, ownerPid: OWNER }, [1]);
    const data = new DashboardData(stateDir, (pid) => pid === OWNER);
    expect((await data.snapshot(Date.now())).jobs[0]).toMatchObject({ state: 'queued' });
    const live = new LivePublisher({
      stateDir,
      pid: OWNER,
      version: '0.0.0',
      log: silentLogger,
      figures: () => ({}),
      tasks: () => [{ job_id: id, index: 0, summary: 'step 1', updated_at: new Date().toISOString() }],
      handles: () => Promise.resolve(false),
      act: () => Promise.resolve({ ok: true, message: '', by_pid: OWNER }),
    });
    await live.start();
    cleanups.push(() => live.close());
    expect((await data.snapshot(Date.now())).jobs[0]).toMatchObject({
      state: 'running',
      progress: { tasks: 1, index: 0, latest: 'step 1' },
    });
    expect((await data.tasks(id))?.tasks).toEqual([
      {
        index: 0,
        state: 'running',
        progress: { summary: 'step 1', updated_at: expect.any(String) as string },
        transcript: false,
      },
    ]);
  });

  it("shows a task's record, not its progress, once the record is newer (it ended since its server's last beat)", async () => {
    const { data, id } = await runningJob((out, jobId) => [
      { job_id: jobId, index: 2, summary: 'step 9', updated_at: new Date(Date.now() - 60_000).toISOString() },
    ]);
    expect((await data.tasks(id))?.tasks[2]).toMatchObject({ state: 'succeeded', preview: 'the answer' });
  });

  it("reads a running task's transcript from its live progress, a finished one's from its record; none for others", async () => {
    const { data, id, out } = await runningJob();
    expect(await data.transcript(id, 0)).toEqual({
      file: path.join(out, '0.transcript.jsonl'),
      lines: transcriptLines,
      cut: false,
      bytes: Buffer.byteLength(jsonl(transcriptLines)),
      skipped: 0,
    });
    expect((await data.transcript(id, 2))?.lines).toEqual([{ type: 'finish', step: 3, answer: 'done', cut: false }]);
    expect(await data.transcript(id, 1)).toBeUndefined();
    expect(await data.transcript(id, 3)).toBeUndefined();
    expect(await data.transcript('job_AAAAAAAAAAAAAAAAAAAAAA', 0)).toBeUndefined();
  });

  it('refuses a transcript path that leaves the job’s output folder, from a live file or a record', async () => {
    const { data, id, store } = await runningJob((out, jobId) => [
      {
        job_id: jobId,
        index: 0,
        summary: 'x',
        transcript: path.join(out, '..', 'job.json'),
        updated_at: new Date().toISOString(),
      },
      { job_id: jobId, index: 1, summary: 'x', transcript: '/etc/passwd', updated_at: new Date().toISOString() },
    ]);
    await expect(data.transcript(id, 0)).rejects.toBeInstanceOf(TranscriptRefused);
    await expect(data.transcript(id, 1)).rejects.toBeInstanceOf(TranscriptRefused);
    await store.appendResult(id, {
      index: 3,
      state: 'failed',
      attempt: 1,
      finishedAt: new Date().toISOString(),
      files: { transcript: '../results.jsonl' },
    });
    await expect(data.transcript(id, 3)).rejects.toBeInstanceOf(TranscriptRefused);
  });

  it('serves GET /api/jobs/<id>/tasks/<index>/transcript with the token only: 200 with its lines, 404 without one, 403 refused', async () => {
    const { data, id, stateDir } = await runningJob((out, jobId) => [
      ...defaultProgress(out, jobId).slice(0, 1),
      { job_id: jobId, index: 1, summary: 'x', transcript: '../job.json', updated_at: new Date().toISOString() },
    ]);
    const token = 't'.repeat(43);
    const dashboard = new Dashboard({
      data,
      stateDir,
      host: '127.0.0.1',
      port: 0,
      assets: {},
      log: silentLogger,
      token,
    });
    await dashboard.start();
    cleanups.push(() => dashboard.close());
    const base = new URL(dashboard.url).origin;
    const get = (route: string, headers: Record<string, string> = { 'x-monitor-token': token }) =>
      fetch(`${base}${route}`, { headers });
    const route = (index: number | string) => `/api/jobs/${id}/tasks/${index}/transcript`;

    const ok = await get(route(0));
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(await ok.json()).toMatchObject({ job_id: id, index: 0, lines: transcriptLines, cut: false });
    expect((await get(route(0), {})).status).toBe(401);
    expect((await get(route(0), { 'x-monitor-token': `${token}x` })).status).toBe(401);
    const refused = await get(route(1));
    expect(refused.status).toBe(403);
    expect(await refused.json()).toEqual({
      error: expect.stringMatching(/^Refused: \.\.\/job\.json is not inside/) as string,
    });
    expect((await get(route(3))).status).toBe(404);
    expect((await get(route('-1'))).status).toBe(404);
    expect((await get(`/api/jobs/${id}/tasks/0/transcript/../../job.json`)).status).toBe(404);
  });
});
