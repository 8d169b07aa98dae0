import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuiltServer } from '../helpers/built-server.js';
import { connectInMemory, jobIdOf, makeTempDir, textOf, type Connected } from '../helpers/client.js';
import type { CollectPage } from '../helpers/collect.js';
import { callProblems, suggestedCalls } from '../helpers/model-view.js';
import {
  collectAll,
  connectWithE2eWorkers,
  e2eWorkers,
  scriptConfig,
  submitScripts,
  until,
} from '../helpers/scripts.js';

let conn: Connected;

beforeAll(async () => {
  conn = await connectWithE2eWorkers();
});

afterAll(async () => {
  await conn.close();
});

interface Resumed {
  job_id: string;
  requeued: number;
  done?: boolean;
  results?: Array<{ index: number; state: string; attempt?: number; value?: { json?: { label?: string } } }>;
}

describe('resume_job', () => {
  it('says there is nothing to resume on a job that succeeded', async () => {
    const jobId = await submitScripts(conn, { worker: 'emit.py', inputs: [{ args: ['ok', '0'] }] });
    await collectAll(conn, jobId);
    const reply = await conn.call('resume_job', { job_id: jobId, include_failed: true, include_cancelled: true });
    expect(reply.isError).toBeFalsy();
    expect(textOf(reply)).toMatch(
      new RegExp(
        `^Nothing to resume: the job has no interrupted, failed, cancelled tasks\\. .*\\n${jobId} \\[script\\] succeeded`,
      ),
    );
    expect(reply.structuredContent).toMatchObject({
      job_id: jobId,
      state: 'succeeded',
      requeued: 0,
      next: expect.stringContaining('Nothing to resume'),
    });
  });

  it('re-runs failed tasks only when asked, as a new attempt, and can wait for them', async () => {
    const jobId = await submitScripts(conn, {
      worker: 'emit.py',
      inputs: [{ args: ['fine', '0'] }, { args: ['broken', '5'] }, { args: ['broken2', '6'] }],
    });
    await collectAll(conn, jobId);

    const plain = await conn.call('resume_job', { job_id: jobId });
    expect(textOf(plain)).toMatch(
      /^Nothing to resume: the job has no interrupted tasks \(include_failed \/ include_cancelled add those\)/,
    );
    expect((plain.structuredContent as unknown as Resumed).requeued).toBe(0);

    const handle = await conn.call('resume_job', { job_id: jobId, include_failed: true });
    expect(handle.isError).toBeFalsy();
    expect(textOf(handle)).toMatch(new RegExp(`^Resumed ${jobId}: 2 task\\(s\\) queued again`));
    expect(handle.structuredContent).toMatchObject({ job_id: jobId, requeued: 2 });
    const { results, job } = await collectAll(conn, jobId);
    expect(job.state).toBe('failed');
    // A task's latest attempt is its result: one per task.
    expect(results.map((r) => r.index).sort()).toEqual([0, 1, 2]);
    const latest = new Map(results.map((r) => [r.index, r]));
    // The succeeded task was not run again (attempt 1 is not shown).
    expect(latest.get(0)).toMatchObject({ state: 'succeeded' });
    expect(latest.get(0)?.attempt).toBeUndefined();
    expect(latest.get(1)).toMatchObject({ state: 'failed', attempt: 2, error: { code: 'NON_ZERO_EXIT' } });
    expect(latest.get(2)).toMatchObject({ state: 'failed', attempt: 2 });

    // With wait_seconds the reply carries the new attempts' results, not the ones collected before.
    const waited = await conn.call('resume_job', { job_id: jobId, include_failed: true, wait_seconds: 30 });
    const structured = waited.structuredContent as unknown as Resumed;
    expect(structured).toMatchObject({ job_id: jobId, requeued: 2, done: true });
    expect(structured.results?.map((r) => [r.index, r.state, r.attempt]).sort()).toEqual([
      [1, 'failed', 3],
      [2, 'failed', 3],
    ]);
  });

  it("next's call, made as written, pages only the results of the tasks run again", async () => {
    const jobId = await submitScripts(conn, {
      worker: 'emit.py',
      inputs: [{ args: ['fine', '0'] }, { args: ['broken', '5'] }],
    });
    await collectAll(conn, jobId);
    const handle = (await conn.call('resume_job', { job_id: jobId, include_failed: true })).structuredContent as {
      next: string;
    };
    const [collect, cancel] = suggestedCalls(handle.next);
    expect(collect).toMatchObject({ tool: 'collect_results', args: { job_ids: [jobId], cursor: expect.any(String) } });
    expect(cancel).toEqual({ tool: 'cancel_job', args: { job_id: jobId } });
    for (const suggested of [collect, cancel])
      expect(await callProblems(conn.client, suggested ?? { tool: '', args: {} })).toEqual([]);
    expect(handle.next).toContain('it waits up to 20 s for the job to finish ("wait_seconds": 50 waits up to 50 s)');
    const page = (await conn.call(collect?.tool ?? '', collect?.args ?? {})).structuredContent as unknown as Resumed;
    expect(page.results?.map((r) => [r.index, r.state, r.attempt])).toEqual([[1, 'failed', 2]]);
  });

  it('runs cancelled tasks again with include_cancelled', async () => {
    const logs = await makeTempDir('monitor-resume-cancelled-');
    const slowLog = path.join(logs, 'slow.log');
    const jobId = await submitScripts(conn, {
      worker: 'record.py',
      inputs: [{ args: [slowLog, '60'] }, { args: [path.join(logs, 'later.log'), '0'] }],
      concurrency: 1,
    });
    // Once its worker runs: a run cancelled before it reached its worker would be no attempt.
    await until(
      async () => (await readFile(slowLog, 'utf8').catch(() => '')).startsWith('start'),
      'the slow task to run',
    );
    await conn.call('cancel_job', { job_id: jobId });
    expect((await collectAll(conn, jobId)).job.state).toBe('cancelled');

    const reply = await conn.call('resume_job', { job_id: jobId, include_cancelled: true, wait_seconds: 0 });
    expect(reply.structuredContent).toMatchObject({ requeued: 2 });
    // The slow one would take 60 s: cancel it again once it runs (one at a time: the other waits).
    await until(async () => {
      const page = await conn.call('collect_results', { job_ids: [jobId], wait_seconds: 1 });
      return (
        (page.structuredContent as { jobs: Array<{ counts: Record<string, number> }> }).jobs[0]?.counts.running === 1
      );
    }, 'the slow task to run');
    await conn.call('cancel_job', { job_id: jobId });
    const { results } = await collectAll(conn, jobId);
    // One result per task, its latest: the slow task's second run; the other never ran (no attempt).
    expect(results.map((r) => [r.index, r.state, r.attempt]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
      [0, 'cancelled', 2],
      [1, 'cancelled', undefined],
    ]);
    await rm(logs, { recursive: true, force: true });
  });

  it("shows each task's latest attempt, with filters that agree with the counts; earlier attempts on request", async () => {
    const inputs = Array.from({ length: 12 }, (_, i) => ({ args: [`t${i}`, i % 3 === 0 ? '4' : '0'] }));
    const jobId = await submitScripts(conn, { worker: 'emit.py', inputs, concurrency: 4 });
    await collectAll(conn, jobId);
    for (let round = 0; round < 2; round++) {
      const resumed = await conn.call('resume_job', { job_id: jobId, include_failed: true, wait_seconds: 30 });
      expect(resumed.structuredContent).toMatchObject({ requeued: 4 });
    }
    const { results, job } = await collectAll(conn, jobId);
    expect(results).toHaveLength(12);
    expect(job.counts).toMatchObject({ succeeded: 8, failed: 4 });
    const failed = await conn.call('collect_results', { job_ids: [jobId], filter: 'failed', wait_seconds: 0 });
    const failedResults = (failed.structuredContent as { results: Array<{ index: number; attempt?: number }> }).results;
    expect(failedResults.map((r) => [r.index, r.attempt]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
      [0, 3],
      [3, 3],
      [6, 3],
      [9, 3],
    ]);
    const all = await conn.call('collect_results', { job_ids: [jobId], all_attempts: true, wait_seconds: 0 });
    const every = (all.structuredContent as { results: Array<{ index: number; attempt?: number }> }).results;
    expect(every).toHaveLength(20);
    expect(every.filter((r) => r.index === 3).map((r) => r.attempt ?? 1)).toEqual([1, 2, 3]);
  });

  it(
    'a job resumed from cancelled whose server is then killed shows interrupted, and a plain resume runs its tasks',
    { timeout: 120_000 },
    async () => {
      const config = await scriptConfig((c) => {
        c.workersDirs = [...c.workersDirs, e2eWorkers];
      });
      const killed = await startBuiltServer(config.stateDir);
      let next: Connected | undefined;
      try {
        const jobId = jobIdOf(
          await killed.call('run_script_batch', {
            worker: 'emit.py',
            inputs: [{ args: ['quick', '0'] }, ...['a', 'b', 'c'].map((label) => ({ args: [label, '0', '0', '60'] }))],
            concurrency: 2,
          }),
        );
        const countsOn = async (call: typeof killed.call): Promise<Record<string, number> | undefined> =>
          (
            (await call('collect_results', { job_ids: [jobId], wait_seconds: 0 }))
              .structuredContent as unknown as CollectPage
          ).jobs[0]?.counts;
        await until(async () => {
          const counts = await countsOn(killed.call);
          return counts?.succeeded === 1 && counts.running === 2;
        }, 'the quick task to finish and two slow ones to run');
        expect((await killed.call('cancel_job', { job_id: jobId })).structuredContent).toMatchObject({
          state: 'cancelled',
        });
        const resumed = await killed.call('resume_job', { job_id: jobId, include_cancelled: true, wait_seconds: 0 });
        expect(resumed.structuredContent).toMatchObject({ requeued: 3 });
        await until(async () => (await countsOn(killed.call))?.running === 2, 'two slow tasks to run again');
        await killed.kill();

        next = await connectInMemory(config, { env: { PATH: process.env.PATH } });
        const conn = next;
        expect((await conn.call('list_jobs', {})).structuredContent).toMatchObject({
          jobs: [{ job_id: jobId, state: 'interrupted' }],
        });
        expect(await countsOn((name, args) => conn.call(name, args))).toMatchObject({
          succeeded: 1,
          interrupted: 3,
          cancelled: 0,
        });
        const plain = await conn.call('resume_job', { job_id: jobId, wait_seconds: 0 });
        expect(plain.structuredContent).toMatchObject({ requeued: 3 });
        await conn.call('cancel_job', { job_id: jobId });
      } finally {
        await killed.kill();
        await next?.close();
        await rm(config.stateDir, { recursive: true, force: true });
      }
    },
  );

  it('refuses an unknown job id with a hint', async () => {
    const reply = await conn.call('resume_job', { job_id: 'job_doesnotexist00000000' });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toMatch(/^JOB_NOT_FOUND: [\s\S]*Next: /);
  });
});
