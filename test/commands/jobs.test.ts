import { execFile, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { renderJobDetail, renderJobTable } from '../../src/commands/jobs.js';
import { DashboardData } from '../../src/dashboard/data.js';
import { connectInMemory, jobIdOf, makeTempDir, repoRoot, testConfig, testProcesses } from '../helpers/client.js';
import { killQuietly, until } from '../helpers/scripts.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
const alive = (pid: number, start?: string): boolean => testProcesses.isAlive(pid, start);

describe('monitor-mcp jobs', () => {
  it('shows each job with its state and counts, and one job task by task, read-only', async () => {
    const config = await testConfig((c) => c.workersDirs.push(fixtures));
    const m = await connectInMemory(config);
    try {
      const reply = await m.call('run_script_batch', {
        worker: 'emit.py',
        inputs: [{ args: ['a'] }, { args: ['b', '1'] }],
        label: 'table test',
        wait_seconds: 20,
      });
      const jobId = jobIdOf(reply);
      const now = Date.now();
      const data = new DashboardData(config.stateDir, alive);
      const table = renderJobTable((await data.snapshot(now)).jobs, config.stateDir, now);
      const row = table.split('\n').find((line) => line.startsWith(jobId)) ?? '';
      expect(row).toMatch(/script\s+table test\s+failed\s+2\s+1\s+1\s+0\s+0/);
      expect(table).toMatch(
        /^JOB\s+KIND\s+LABEL\s+STATE\s+TASKS\s+OK\s+FAILED\s+CANCELLED\s+PENDING\s+WALL\s+ETA\s+CREATED/,
      );
      const detail = await data.tasks(jobId);
      expect(detail?.job.state).toBe('failed');
      expect(detail?.job.failures).toEqual([
        { code: 'NON_ZERO_EXIT', count: 1, example: expect.stringMatching(/^emit\.py exited with code 1/) },
      ]);
      if (!detail) throw new Error('no detail');
      const text = renderJobDetail(detail, now);
      expect(text).toMatch(
        new RegExp(`^${jobId} \\[script: table test\\] failed: 2/2 done \\(1 ok, 1 failed, 0 cancelled, 0 pending\\)`),
      );
      // Its age said once: "created 17.2 s ago", not "ago ago".
      expect(text.split('\n')[1]).toMatch(/^created (\d+ ms|[\d.]+ s) ago; wall (\d+ ms|[\d.]+ s)$/);
      expect(text).toMatch(/^0\s+succeeded\s+1\s+[\d.]+ m?s\s+a\s*$/m);
      expect(text).toMatch(/^1\s+failed\s+1\s+[\d.]+ m?s\s+b 1\s+NON_ZERO_EXIT: emit\.py exited with code 1/m);
      expect(await data.tasks('job_AAAAAAAAAAAAAAAAAAAAAA')).toBeUndefined();
    } finally {
      await m.close();
    }
    expect(
      renderJobTable(
        (await new DashboardData(config.stateDir, alive).snapshot(Date.now())).jobs,
        config.stateDir,
        Date.now(),
      ),
    ).toMatch(/No jobs in/);
  });

  it('the built command says why it shows no job: a state directory that does not exist, or is empty', async () => {
    const dir = await makeTempDir('monitor-jobs-empty-');
    dirs.push(dir);
    const table = async (stateDir: string): Promise<string> =>
      (await run(process.execPath, [cli, 'jobs', '--state-dir', stateDir], { cwd: repoRoot })).stdout;
    expect(await table(dir)).toBe(`No jobs in ${dir} (the folder is empty).\n`);
    const missing = path.join(dir, 'typo');
    expect(await table(missing)).toBe(`No jobs in ${missing} (the folder does not exist).\n`);
    const json = JSON.parse(
      (await run(process.execPath, [cli, 'jobs', '--json', '--state-dir', missing], { cwd: repoRoot })).stdout,
    ) as unknown;
    expect(json).toEqual({ state_dir: missing, state_dir_note: 'the folder does not exist', jobs: [] });
  }, 60_000);

  it(
    'the built command: a running job with its ETA, then after its server is SIGKILLed, interrupted with the resume hint; --json and --watch',
    { timeout: 120_000 },
    async () => {
      const stateDir = await makeTempDir('monitor-jobs-');
      dirs.push(stateDir);
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [cli, '--state-dir', stateDir, '--workers-dir', fixtures, '--log-level', 'warn'],
        cwd: repoRoot,
        stderr: 'pipe',
      });
      const client = new Client({ name: 'jobs-test', version: '0' });
      await client.connect(transport);
      const serverPid = transport.pid ?? 0;
      const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> =>
        (await client.callTool({ name, arguments: args })) as CallToolResult;
      try {
        const jobId = jobIdOf(
          await call('run_script_batch', {
            worker: 'nap.py',
            inputs: Array.from({ length: 40 }, (_, i) => ({ args: [i < 2 ? '0' : '30'] })),
            concurrency: 2,
            label: 'naps',
          }),
        );
        const json = async (...args: string[]): Promise<{ jobs: Array<Record<string, unknown>> }> =>
          JSON.parse(
            (await run(process.execPath, [cli, 'jobs', '--json', '--state-dir', stateDir, ...args], { cwd: repoRoot }))
              .stdout,
          ) as { jobs: Array<Record<string, unknown>> };
        await until(
          async () => ((await json()).jobs[0]?.succeeded as number) >= 2,
          'two quick tasks to finish',
          60_000,
          200,
        );
        const running = (await json()).jobs[0];
        expect(running).toMatchObject({
          id: jobId,
          state: 'running',
          label: 'naps',
          tasks: 40,
          pending: 38,
          owner: { pid: serverPid, alive: true },
        });
        expect(running?.eta_ms).toBeGreaterThan(0);

        // --watch redraws until interrupted: two frames, then SIGINT ends it with 0.
        const watcher = spawn(process.execPath, [cli, 'jobs', '--watch', '--state-dir', stateDir], {
          cwd: repoRoot,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        watcher.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
        });
        const exited = new Promise<number | null>((resolve) => watcher.on('exit', (code) => resolve(code)));
        await until(() => out.split('State directory:').length > 2, 'two frames of --watch', 20_000, 100);
        watcher.kill('SIGINT');
        expect(await exited).toBe(0);
        expect(out).toMatch(
          new RegExp(`${jobId}\\s+script\\s+naps\\s+running\\s+40\\s+2\\s+0\\s+0\\s+38\\s+\\S+\\s+\\S+`),
        );

        killQuietly(serverPid);
        await until(() => !testProcesses.isAlive(serverPid), 'the server to die', 10_000, 50);
        const gone = (await json()).jobs[0];
        expect(gone).toMatchObject({ state: 'interrupted', owner: { pid: serverPid, alive: false } });
        expect(gone?.next).toBe(
          `Its server (pid ${serverPid}) is gone. resume_job with {"job_id":"${jobId}"} (or Resume on the dashboard) runs its 38 unfinished task(s) again.`,
        );
        const table = (await run(process.execPath, [cli, 'jobs', '--state-dir', stateDir], { cwd: repoRoot })).stdout;
        expect(table).toMatch(new RegExp(`${jobId}\\s+script\\s+naps\\s+interrupted\\s+40\\s+2\\s+0\\s+0\\s+38`));
        expect(table).toContain(`${jobId}: Its server (pid ${serverPid}) is gone.`);
        const one = JSON.parse(
          (await run(process.execPath, [cli, 'jobs', jobId, '--json', '--state-dir', stateDir], { cwd: repoRoot }))
            .stdout,
        ) as { job: { state: string }; tasks: Array<{ state: string }> };
        expect(one.job.state).toBe('interrupted');
        expect(one.tasks.map((task) => task.state)).toEqual([
          ...Array<string>(2).fill('succeeded'),
          ...Array<string>(38).fill('interrupted'),
        ]);
      } finally {
        killQuietly(serverPid);
        await client.close().catch(() => undefined);
      }
    },
  );
});
