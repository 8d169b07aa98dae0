import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { textOf, type Connected } from '../helpers/client.js';
import { collectAll, connectWithE2eWorkers, submitScripts, until } from '../helpers/scripts.js';

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
    expect(textOf(reply)).toMatch(new RegExp(`^Nothing to resume: the job has no interrupted, failed, cancelled tasks\\. .*\\n${jobId} \\[script\\] succeeded`));
    expect(reply.structuredContent).toMatchObject({ job_id: jobId, state: 'succeeded', requeued: 0, next: expect.stringContaining('Nothing to resume') });
  });

  it('re-runs failed tasks only when asked, as a new attempt, and can wait for them', async () => {
    const jobId = await submitScripts(conn, { worker: 'emit.py', inputs: [{ args: ['fine', '0'] }, { args: ['broken', '5'] }, { args: ['broken2', '6'] }] });
    await collectAll(conn, jobId);

    const plain = await conn.call('resume_job', { job_id: jobId });
    expect(textOf(plain)).toMatch(/^Nothing to resume: the job has no interrupted tasks \(include_failed \/ include_cancelled add those\)/);
    expect((plain.structuredContent as unknown as Resumed).requeued).toBe(0);

    const handle = await conn.call('resume_job', { job_id: jobId, include_failed: true });
    expect(handle.isError).toBeFalsy();
    expect(textOf(handle)).toMatch(new RegExp(`^Resumed ${jobId}: 2 task\\(s\\) queued again`));
    expect(handle.structuredContent).toMatchObject({ job_id: jobId, requeued: 2 });
    const { results, job } = await collectAll(conn, jobId);
    expect(job.state).toBe('failed');
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

  it('runs cancelled tasks again with include_cancelled', async () => {
    const jobId = await submitScripts(conn, { worker: 'emit.py', inputs: [{ args: ['slow', '0', '0', '60'] }, { args: ['later', '0'] }], concurrency: 1 });
    await conn.call('cancel_job', { job_id: jobId });
    expect((await collectAll(conn, jobId)).job.state).toBe('cancelled');

    const reply = await conn.call('resume_job', { job_id: jobId, include_cancelled: true, wait_seconds: 0 });
    expect(reply.structuredContent).toMatchObject({ requeued: 2 });
    // The slow one would take 60 s: cancel it again once the quick one has run.
    await until(async () => {
      const page = await conn.call('collect_results', { job_ids: [jobId], wait_seconds: 1 });
      return (page.structuredContent as { jobs: Array<{ counts: Record<string, number> }> }).jobs[0]?.counts.running === 1;
    }, 'the slow task to run alone');
    await conn.call('cancel_job', { job_id: jobId });
    const { results } = await collectAll(conn, jobId);
    const attempts = results.filter((r) => (r.attempt ?? 1) === 2).map((r) => r.index).sort();
    expect(attempts).toEqual([0, 1]);
  });

  it('refuses an unknown job id with a hint', async () => {
    const reply = await conn.call('resume_job', { job_id: 'job_doesnotexist00000000' });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toMatch(/^JOB_NOT_FOUND: [\s\S]*Next: /);
  });
});
