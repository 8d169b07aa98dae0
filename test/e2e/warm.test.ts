import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { connectInMemory, jobIdOf, makeTempDir, repoRoot, textOf } from '../helpers/client.js';
import {
  collectAll,
  killQuietly,
  processesWithToken,
  scriptConfig,
  tokenServerPid,
  until,
} from '../helpers/scripts.js';
import { warmProcessesOf, watchWarmProcesses } from '../pools/script/warm-runs.js';

/** The built server (`npm test` compiles first) with warm workers, SIGKILLed as a crashing machine would. */
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const warmWorkers = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');
const stateDirs: string[] = [];

afterAll(async () => {
  await Promise.all(stateDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Server {
  pid: number;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
  kill(): Promise<void>;
  close(): Promise<void>;
}

async function start(stateDir: string): Promise<Server> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, '--state-dir', stateDir, '--workers-dir', warmWorkers, '--root', repoRoot, '--log-level', 'warn'],
    cwd: repoRoot,
    stderr: 'pipe',
  });
  const client = new Client({ name: 'e2e-warm', version: '0.0.0' });
  await client.connect(transport);
  const pid = transport.pid ?? 0;
  return {
    pid,
    call: async (name, args) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult,
    async kill() {
      killQuietly(pid);
      await client.close().catch(() => undefined);
    },
    close: () => client.close(),
  };
}

/** The worker processes of a server (warm ones included), found by their run token. */
const processesOf = (serverPid: number): number[] => processesWithToken((token) => tokenServerPid(token) === serverPid);

describe('warm workers of the built server', () => {
  it('leaves no warm process alive after the server is SIGKILLed and started again', { timeout: 120_000 }, async () => {
    const stateDir = await makeTempDir('monitor-e2e-warm-');
    stateDirs.push(stateDir);
    const first = await start(stateDir);
    let orphans: number[] = [];
    try {
      // Two quick tasks leave two idle processes; two long ones keep two busy (and the job running).
      const inputs = [{ args: ['pid'] }, { args: ['pid'] }, { args: ['sleep', '60'] }, { args: ['sleep', '60'] }];
      const reply = await first.call('run_script_batch', { worker: 'warm_probe.py', inputs, concurrency: 4 });
      expect(reply.isError, textOf(reply)).toBeFalsy();
      const jobId = jobIdOf(reply);
      await until(() => processesOf(first.pid).length >= 4, 'four warm processes to run', 60_000);
      // Four processes can exist before the last task reaches one: the sleeps must be running, or
      // an idle process that was about to get one exits at the kill like the others.
      await until(
        async () => {
          const page = (await first.call('collect_results', { job_ids: [jobId], wait_seconds: 0 }))
            .structuredContent as { jobs: Array<{ counts: { succeeded: number; running: number } }> };
          return page.jobs[0]?.counts.succeeded === 2 && page.jobs[0]?.counts.running === 2;
        },
        'the two quick tasks done and the two sleeps running',
        60_000,
        100,
      );
      await first.kill();
      // The idle ones see EOF on fd 3 and exit by themselves; the busy ones outlive the server, each
      // in its own process group, until the next start ends them.
      orphans = processesOf(first.pid);
      expect(orphans.length).toBeGreaterThanOrEqual(2);

      const next = await start(stateDir);
      try {
        await until(
          () => processesOf(first.pid).length === 0,
          `the ${orphans.length} warm processes the killed server left to be ended`,
          30_000,
        );
      } finally {
        await next.close();
      }
    } finally {
      for (const pid of [...orphans, ...processesOf(first.pid)]) killQuietly(pid);
    }
  });
});

/** Counts of a job as collect_results shows them now. */
async function countsOf(
  conn: { call(name: string, args: Record<string, unknown>): Promise<CallToolResult> },
  jobId: string,
): Promise<Record<string, number>> {
  const page = (await conn.call('collect_results', { job_ids: [jobId], wait_seconds: 0 })).structuredContent as {
    jobs: Array<{ counts: Record<string, number> }>;
  };
  return page.jobs[0]?.counts ?? {};
}

describe('warm workers through an MCP client', () => {
  const connect = async (): Promise<Awaited<ReturnType<typeof connectInMemory>>> =>
    connectInMemory(
      await scriptConfig((c) => {
        c.workersDirs = [...c.workersDirs, warmWorkers];
      }),
      { env: { PATH: process.env.PATH } },
    );

  it.skipIf(process.platform !== 'linux')(
    'a concurrency-2 job resumed over a warm worker never has more than 2 warm processes alive (counted in /proc)',
    { timeout: 120_000 },
    async () => {
      const conn = await connect();
      let jobId = '';
      try {
        const inputs = Array.from({ length: 8 }, () => ({ args: ['sleep', '0.4'] }));
        const reply = await conn.call('run_script_batch', {
          worker: 'warm_probe.py',
          inputs,
          concurrency: 2,
          cwd: repoRoot,
        });
        expect(reply.isError, textOf(reply)).toBeFalsy();
        jobId = jobIdOf(reply);
        await until(
          async () => {
            const counts = await countsOf(conn, jobId);
            return (counts.succeeded ?? 0) >= 2 && counts.running === 2;
          },
          'two tasks done and two running',
          60_000,
          20,
        );
        expect((await conn.call('cancel_job', { job_id: jobId })).isError).toBeFalsy();
        await until(() => warmProcessesOf(jobId).length === 0, 'the cancelled run to leave no process', 20_000);
        // Tasks that ran (attempt 2) and tasks never started (attempt 1) run again side by side.
        const watch = watchWarmProcesses(jobId);
        const resumed = await conn.call('resume_job', { job_id: jobId, include_cancelled: true });
        expect(resumed.isError, textOf(resumed)).toBeFalsy();
        const { results, job } = await collectAll(conn, jobId, { waitSeconds: 5, timeoutMs: 90_000 });
        const most = watch.stop();
        expect(job.state).toBe('succeeded');
        expect(results.every((r) => r.state === 'succeeded')).toBe(true);
        expect(new Set(results.map((r) => r.attempt ?? 1))).toEqual(new Set([1, 2]));
        expect(most).toBeLessThanOrEqual(2);
        await until(() => warmProcessesOf(jobId).length === 0, 'the finished job to leave no process', 20_000);
      } finally {
        await conn.close();
        if (jobId) for (const pid of warmProcessesOf(jobId)) killQuietly(pid);
      }
    },
  );

  it(
    'a worker that closes its request or reply pipe costs at most its own task, at once, never a timeout',
    { timeout: 120_000 },
    async () => {
      const conn = await connect();
      const dir = await makeTempDir('monitor-e2e-pipes-');
      stateDirs.push(dir);
      let jobId = '';
      try {
        const inputs = [
          { args: ['close_requests'] },
          { args: ['pid'] },
          { args: ['close_replies', path.join(dir, 'pid')] },
          { args: ['pid'] },
        ];
        const started = Date.now();
        const reply = await conn.call('run_script_batch', {
          worker: 'warm_probe.py',
          inputs,
          concurrency: 1,
          timeout_seconds: 30,
          cwd: repoRoot,
        });
        expect(reply.isError, textOf(reply)).toBeFalsy();
        jobId = jobIdOf(reply);
        const { results } = await collectAll(conn, jobId, { waitSeconds: 5, timeoutMs: 90_000 });
        expect(results.map((r) => r.state)).toEqual(['succeeded', 'succeeded', 'failed', 'succeeded']);
        expect(results[2]?.error).toMatchObject({
          code: 'WORKER_PROTOCOL',
          message: expect.stringContaining('closed its reply pipe (fd 4)'),
          hint: expect.stringContaining('warm: false'),
        });
        // Far from the 30 s timeout any of them would have waited for.
        expect(Date.now() - started).toBeLessThan(20_000);
      } finally {
        await conn.close();
        if (jobId) for (const pid of warmProcessesOf(jobId)) killQuietly(pid);
      }
    },
  );
});
