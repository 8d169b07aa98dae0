import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendJson, startHttpServer, type TestHttpServer } from '../fixtures/http-server.js';
import { connectInMemory, jobIdOf, textOf, type Connected } from '../helpers/client.js';
import { callProblems, type SuggestedCall, suggestedCalls } from '../helpers/model-view.js';
import { collectAll, e2eWorkers, scriptConfig, submitScripts } from '../helpers/scripts.js';

let conn: Connected;
let api: TestHttpServer;
const ids: Record<'done' | 'failed' | 'http' | 'running', string> = { done: '', failed: '', http: '', running: '' };

interface Listed {
  jobs: Array<{ job_id: string; kind: string; state: string; label?: string; counts: Record<string, number> }>;
  total: number;
  next: string;
}

/** The calls a next text suggests, each checked against its tool's inputSchema. */
async function exactCalls(text: string): Promise<SuggestedCall[]> {
  const calls = suggestedCalls(text);
  for (const suggested of calls) expect(await callProblems(conn.client, suggested), text).toEqual([]);
  return calls;
}
async function list(args: Record<string, unknown>): Promise<{ text: string; listed: Listed }> {
  const reply = await conn.call('list_jobs', args);
  expect(reply.isError, textOf(reply)).toBeFalsy();
  return { text: textOf(reply), listed: reply.structuredContent as unknown as Listed };
}

beforeAll(async () => {
  api = await startHttpServer((_req, res) => sendJson(res, 200, { ok: true }));
  conn = await connectInMemory(
    await scriptConfig((c) => {
      c.workersDirs = [...c.workersDirs, e2eWorkers];
      c.http.allowHosts = [api.hostEntry];
      c.http.allowPrivateAddresses = true;
    }),
    { env: { PATH: process.env.PATH } },
  );
  // Oldest first: a succeeded, a failed and an http job, all finished; then one that keeps running.
  ids.done = await submitScripts(conn, { worker: 'emit.py', inputs: [{ args: ['a', '0'] }], label: 'all good' });
  await collectAll(conn, ids.done);
  ids.failed = await submitScripts(conn, {
    worker: 'emit.py',
    inputs: [{ args: ['b', '0'] }, { args: ['c', '3'] }],
    label: 'one fails',
  });
  await collectAll(conn, ids.failed);
  ids.http = jobIdOf(await conn.call('http_batch', { requests: [{ url: `${api.origin}/x` }], label: 'an api call' }));
  await collectAll(conn, ids.http);
  ids.running = await submitScripts(conn, {
    worker: 'emit.py',
    inputs: [{ args: ['slow', '0', '0', '60'] }, { args: ['queued', '0'] }],
    concurrency: 1,
    label: 'still running',
  });
});

afterAll(async () => {
  await conn.call('cancel_job', { job_id: ids.running });
  await conn.close();
  await api.close();
});

describe('list_jobs', () => {
  it('lists every job newest first, with kind, label, state and counts', async () => {
    const { text, listed } = await list({});
    expect(listed.total).toBe(4);
    expect(listed.jobs.map((j) => j.job_id)).toEqual([ids.running, ids.http, ids.failed, ids.done]);
    expect(listed.jobs.find((j) => j.job_id === ids.failed)).toMatchObject({
      kind: 'script',
      state: 'failed',
      label: 'one fails',
      counts: { succeeded: 1, failed: 1, total: 2 },
    });
    expect(listed.jobs.find((j) => j.job_id === ids.http)).toMatchObject({ kind: 'http', state: 'succeeded' });
    expect(text).toMatch(new RegExp(`${ids.done} \\[script: all good\\] succeeded — 1/1 done`));
    expect(text).toMatch(/created .*ago|created/);
    expect(text).not.toContain('raise limit');
  });

  it('filters by active, finished and a single state', async () => {
    expect((await list({ state: 'active' })).listed.jobs.map((j) => j.job_id)).toEqual([ids.running]);
    expect((await list({ state: 'finished' })).listed.jobs.map((j) => j.job_id)).toEqual([
      ids.http,
      ids.failed,
      ids.done,
    ]);
    expect((await list({ state: 'failed' })).listed.jobs.map((j) => j.job_id)).toEqual([ids.failed]);
    const none = await list({ state: 'interrupted' });
    const noneNext = 'No job matches; list_jobs with {} lists them all.';
    expect(none.listed).toEqual({ jobs: [], shown: 0, total: 0, next: noneNext });
    expect(none.text).toBe(noneNext);
  });

  it('filters by kind', async () => {
    expect((await list({ kind: 'http' })).listed.jobs.map((j) => j.job_id)).toEqual([ids.http]);
    expect((await list({ kind: 'script' })).listed.total).toBe(3);
    expect((await list({ kind: 'llm' })).listed.total).toBe(0);
    expect((await list({ kind: 'script', state: 'finished' })).listed.jobs.map((j) => j.job_id)).toEqual([
      ids.failed,
      ids.done,
    ]);
  });

  it('shows at most limit jobs and says how many more there are', async () => {
    const { text, listed } = await list({ limit: 2 });
    expect(listed.jobs.map((j) => j.job_id)).toEqual([ids.running, ids.http]);
    expect(listed.total).toBe(4);
    expect(text).toContain('2 more job(s) match: list_jobs with {"limit":4} lists them.');
    // The call as written, made: every job.
    const [more] = await exactCalls(listed.next);
    expect(more?.tool).toBe('list_jobs');
    const all = await list(more?.args ?? {});
    expect(all.listed.jobs).toHaveLength(4);
    const bad = await conn.call('list_jobs', { limit: 0 });
    expect(bad.isError).toBe(true);
  });
  it('names the exact call to make next: the running jobs collected, else the newest job', async () => {
    const { listed } = await list({});
    const [running] = await exactCalls(listed.next);
    expect(running).toEqual({ tool: 'collect_results', args: { job_ids: [ids.running] } });
    expect(listed.next).toMatch(
      /waits up to 20 s for the running job\(s\) to finish \("wait_seconds": 50 waits up to 50 s\)/,
    );

    const finished = await list({ state: 'finished' });
    const [newest] = await exactCalls(finished.listed.next);
    expect(newest).toEqual({ tool: 'collect_results', args: { job_ids: [ids.http] } });
    // Made as written: the newest finished job's results, at once.
    const page = await conn.call(newest?.tool ?? '', newest?.args ?? {});
    expect(page.structuredContent).toMatchObject({ done: true, results: [{ state: 'succeeded' }] });
  });
});
