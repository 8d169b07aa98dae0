import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/log.js';
import { StateLayout } from '../src/store/layout.js';
import { StateReader } from '../src/store/reader.js';
import { type Connected } from './helpers/client.js';
import { connectWithE2eWorkers, submitScripts, until } from './helpers/scripts.js';

let conn: Connected;

beforeAll(async () => {
  conn = await connectWithE2eWorkers();
});

afterAll(async () => {
  await conn.close();
});

/** Writes a dashboard's control request and waits for the server's reply. */
async function ask(
  action: 'cancel' | 'resume',
  jobId: string,
): Promise<{ ok: boolean; message: string; by_pid: number }> {
  const dir = new StateLayout(conn.config.stateDir).controlDir;
  const id = `req-${action}-${jobId}`;
  await writeFile(
    path.join(dir, `${id}.json`),
    JSON.stringify({ action, job_id: jobId, at: new Date().toISOString() }),
  );
  const replyFile = path.join(dir, `${id}.reply.json`);
  let reply = '';
  await until(async () => {
    reply = await readFile(replyFile, 'utf8').catch(() => '');
    return reply !== '';
  }, `the reply to ${id}`);
  return JSON.parse(reply) as { ok: boolean; message: string; by_pid: number };
}

async function stateOf(jobId: string): Promise<string | undefined> {
  const page = await conn.call('list_jobs', {});
  return (page.structuredContent as { jobs: Array<{ job_id: string; state: string }> }).jobs.find(
    (job) => job.job_id === jobId,
  )?.state;
}

describe('live control', () => {
  it("publishes this server's live file, and cancels and resumes its jobs when the dashboard asks", async () => {
    await until(
      async () => (await new StateReader(conn.config.stateDir, silentLogger).liveServers(Date.now())).length === 1,
      'the live file',
    );
    const [live] = await new StateReader(conn.config.stateDir, silentLogger).liveServers(Date.now());
    expect(live?.pid).toBe(process.pid);

    const jobId = await submitScripts(conn, { worker: 'sleep.py', inputs: [{ args: ['60'] }] });
    const cancelled = await ask('cancel', jobId);
    expect(cancelled).toMatchObject({ ok: true, by_pid: process.pid });
    expect(cancelled.message).toMatch(new RegExp(`^Cancelled ${jobId}: it is `));
    await until(async () => (await stateOf(jobId)) === 'cancelled', 'the job cancelled');

    const resumed = await ask('resume', jobId);
    expect(resumed).toMatchObject({ ok: true, message: `Resumed ${jobId}: 1 task(s) queued again.` });
    await until(async () => (await stateOf(jobId)) !== 'cancelled', 'the job queued again');
    await conn.call('cancel_job', { job_id: jobId });
  });
});
