import { rm } from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuiltServer } from '../helpers/built-server.js';
import { connectInMemory, jobIdOf, textOf, type Connected } from '../helpers/client.js';
import type { CollectPage } from '../helpers/collect.js';
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

interface JobView {
  job_id: string;
  state: string;
  counts: Record<string, number>;
}

describe('cancel_job', () => {
  it('stops a running job: the running task is killed, queued ones dropped, finished results kept', async () => {
    const jobId = await submitScripts(conn, {
      worker: 'emit.py',
      inputs: [
        { args: ['quick', '0'] },
        { args: ['slow', '0', '0', '60'] },
        { args: ['never', '0'] },
        { args: ['never2', '0'] },
      ],
      concurrency: 1,
    });
    // Wait until the quick task finished and the slow one runs.
    for (let i = 0; i < 200; i++) {
      const page = await conn.call('collect_results', { job_ids: [jobId], wait_seconds: 0 });
      const counts = (page.structuredContent as { jobs: JobView[] }).jobs[0]?.counts;
      if (counts?.succeeded === 1 && counts.running === 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const reply = await conn.call('cancel_job', { job_id: jobId });
    expect(reply.isError).toBeFalsy();
    expect(textOf(reply)).toMatch(/^Cancelled 2 queued and 1 running task\(s\)\./);
    const { results, job } = await collectAll(conn, jobId);
    expect(job.state).toBe('cancelled');
    expect(results.map((r) => [r.index, r.state])).toEqual([
      [0, 'succeeded'],
      [1, 'cancelled'],
      [2, 'cancelled'],
      [3, 'cancelled'],
    ]);
    expect(results[0]?.value?.json).toMatchObject({ label: 'quick' });

    // Again: nothing left to stop, and nothing changes.
    const again = await conn.call('cancel_job', { job_id: jobId });
    expect(again.isError).toBeFalsy();
    expect(textOf(again)).toMatch(/^Nothing to cancel: /);
    expect((again.structuredContent as unknown as JobView).state).toBe('cancelled');
  });

  it('leaves a finished job as it was: succeeded stays succeeded, failed stays failed, results intact', async () => {
    const succeeded = await submitScripts(conn, { worker: 'emit.py', inputs: [{ args: ['ok', '0'] }] });
    const failed = await submitScripts(conn, {
      worker: 'emit.py',
      inputs: [{ args: ['ok', '0'] }, { args: ['bad', '4'] }],
    });
    await collectAll(conn, succeeded);
    await collectAll(conn, failed);
    for (const [jobId, state] of [
      [succeeded, 'succeeded'],
      [failed, 'failed'],
    ] as const) {
      const reply = await conn.call('cancel_job', { job_id: jobId });
      expect(reply.isError).toBeFalsy();
      expect(textOf(reply)).toMatch(
        new RegExp(`^Nothing to cancel: the job had finished\\.\\n${jobId} \\[script\\] ${state}`),
      );
      expect(reply.structuredContent).toMatchObject({ job_id: jobId, state, counts: { cancelled: 0 } });
      const { results, job } = await collectAll(conn, jobId);
      expect(job.state).toBe(state);
      expect(results.every((r) => r.state !== 'cancelled')).toBe(true);
    }
    const listed = await conn.call('list_jobs', { state: 'cancelled' });
    expect(textOf(listed)).not.toContain(succeeded);
    expect(textOf(listed)).not.toContain(failed);
  });

  it(
    'cancels a job left interrupted by a killed server: its tasks recorded cancelled, so after a restart too, and resumable',
    { timeout: 120_000 },
    async () => {
      const config = await scriptConfig((c) => {
        c.workersDirs = [...c.workersDirs, e2eWorkers];
      });
      const killed = await startBuiltServer(config.stateDir);
      let jobId = '';
      try {
        jobId = jobIdOf(
          await killed.call('run_script_batch', {
            worker: 'emit.py',
            inputs: [{ args: ['quick', '0'] }, ...['a', 'b', 'c'].map((label) => ({ args: [label, '0', '0', '60'] }))],
            concurrency: 2,
          }),
        );
        await until(async () => {
          const page = await killed.call('collect_results', { job_ids: [jobId], wait_seconds: 0 });
          const counts = (page.structuredContent as unknown as CollectPage).jobs[0]?.counts;
          return counts?.succeeded === 1 && counts.running === 2;
        }, 'the quick task to finish and two slow ones to run');
      } finally {
        // A kill -9: its two running tasks leave no record (the next server ends their processes).
        await killed.kill();
      }

      const conns: Connected[] = [];
      const connect = async (): Promise<Connected> => {
        const conn = await connectInMemory(config, { env: { PATH: process.env.PATH } });
        conns.push(conn);
        return conn;
      };
      try {
        const next = await connect();
        const listed = await next.call('list_jobs', {});
        expect(listed.structuredContent).toMatchObject({ jobs: [{ job_id: jobId, state: 'interrupted' }] });
        const reply = await next.call('cancel_job', { job_id: jobId });
        expect(reply.isError).toBeFalsy();
        expect(textOf(reply)).toMatch(/^Cancelled 3 interrupted task\(s\): their server had stopped/);
        expect(reply.structuredContent).toMatchObject({
          job_id: jobId,
          state: 'cancelled',
          counts: { succeeded: 1, cancelled: 3, interrupted: 0 },
          cancelled_interrupted: 3,
        });
        const { results, job } = await collectAll(next, jobId);
        expect(job.state).toBe('cancelled');
        expect(results.map((r) => [r.index, r.state])).toEqual([
          [0, 'succeeded'],
          [1, 'cancelled'],
          [2, 'cancelled'],
          [3, 'cancelled'],
        ]);
        // Stopped as a client restarting it would (Connected.close would remove the state directory).
        await next.client.close();
        await next.app.close();

        // Started again: still cancelled, and resume_job with include_cancelled runs the three again.
        const later = await connect();
        expect((await later.call('list_jobs', { state: 'cancelled' })).structuredContent).toMatchObject({
          jobs: [{ job_id: jobId, state: 'cancelled' }],
        });
        const resumed = await later.call('resume_job', { job_id: jobId, include_cancelled: true, wait_seconds: 0 });
        expect(resumed.structuredContent).toMatchObject({ requeued: 3 });
        await later.call('cancel_job', { job_id: jobId });
      } finally {
        await Promise.all(conns.map((conn) => conn.close().catch(() => undefined)));
        await rm(config.stateDir, { recursive: true, force: true });
      }
    },
  );

  it('refuses an unknown job id with a hint', async () => {
    const reply = await conn.call('cancel_job', { job_id: 'job_doesnotexist00000000' });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toMatch(/^JOB_NOT_FOUND: [\s\S]*Next: /);
  });
});
