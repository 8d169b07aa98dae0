import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { jobIdOf, makeTempDir, repoRoot, textOf } from '../helpers/client.js';
import { startDashboard } from '../helpers/dashboard.js';
import { seededRandom } from '../helpers/random.js';
import { killQuietly, until } from '../helpers/scripts.js';

/**
 * The state directory as untrusted input (issue 24): real jobs (finished, interrupted, one run by a
 * live server) beside jobs and shared files with random, seeded damage (truncated, empty, wrong
 * types, huge, binary, invalid UTF-8, symlinks to /dev/zero and outside, FIFOs, folders in place of
 * files). A server, the dashboard and `monitor-mcp jobs` over it: every good job lists, collects and
 * resumes, every job with damaged metadata or results shows as damaged, and nothing hangs.
 */
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const run = promisify(execFile);
const cleanup: string[] = [];
const servers: Server[] = [];

afterAll(async () => {
  for (const server of servers) await server.kill();
  await Promise.all(cleanup.map((d) => rm(d, { recursive: true, force: true })));
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
    args: [cli, '--state-dir', stateDir, '--workers-dir', fixtures, '--root', repoRoot, '--log-level', 'error'],
    cwd: repoRoot,
    stderr: 'pipe',
  });
  const client = new Client({ name: 'chaos-state', version: '0.0.0' });
  await client.connect(transport);
  const pid = transport.pid ?? 0;
  const server: Server = {
    pid,
    call: async (name, args) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 30_000 })) as CallToolResult,
    async kill() {
      killQuietly(pid);
      await client.close().catch(() => undefined);
    },
    close: () => client.close(),
  };
  servers.push(server);
  return server;
}

const napJob = (seconds: readonly number[]) => ({
  worker: 'nap.py',
  inputs: seconds.map((s, i) => ({ args: [String(s), `t${i}`] })),
  concurrency: 2,
});

type Damage = (file: string, next: () => number, outside: string) => Promise<void>;

/** Ways a file can be damaged; each replaces whatever is at `file`. */
const damages: Record<string, Damage> = {
  truncated: async (file, next) => {
    const text = await readFile(file).catch(() => Buffer.from('{"id":"x"}'));
    await replace(file, () => writeFile(file, text.subarray(0, Math.floor(next() * text.length))));
  },
  empty: (file) => replace(file, () => writeFile(file, '')),
  wrongTypes: (file) =>
    replace(file, () => writeFile(file, '{"id":5,"kind":[],"createdAt":{},"taskCount":"x","index":"y","state":7}\n')),
  huge: (file) => replace(file, () => writeFile(file, Buffer.alloc(17 * 1024 * 1024 + 3, 0x61))),
  binary: (file, next) =>
    replace(file, () => writeFile(file, Buffer.from(Array.from({ length: 4096 }, () => Math.floor(next() * 256))))),
  invalidUtf8: (file) => replace(file, () => writeFile(file, Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0xff, 0xfe, 0x0a]))),
  devZero: (file) => replace(file, () => symlink('/dev/zero', file)),
  outside: (file, _next, outside) => replace(file, () => symlink(outside, file)),
  fifo: (file) => replace(file, () => run('mkfifo', [file]).then(() => undefined)),
  folder: (file) => replace(file, () => mkdir(file)),
};

async function replace(file: string, make: () => Promise<void>): Promise<void> {
  await rm(file, { recursive: true, force: true });
  await make();
}

/** A job id no server made: 22 characters from the seeded generator. */
function newId(next: () => number): string {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
  return `job_${Array.from({ length: 22 }, () => chars[Math.floor(next() * chars.length)]).join('')}`;
}

interface ListedJob {
  job_id: string;
  state: string;
  damaged?: { path: string; reason: string };
}

describe('chaos: a damaged state directory', () => {
  const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);

  it(
    `lists, collects and resumes every good job, shows the damaged ones, and never hangs (seed ${seed})`,
    { timeout: 240_000 },
    async () => {
      const next = seededRandom(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
      const stateDir = await makeTempDir('monitor-chaos-state-');
      cleanup.push(stateDir);
      const outside = path.join(stateDir, '..', `${path.basename(stateDir)}-outside.json`);
      cleanup.push(outside);
      await writeFile(outside, '{"secret":"outside the state directory"}\n');

      // Good jobs: finished ones, one cut off by a SIGKILL (interrupted), one a live server runs.
      const first = await start(stateDir);
      const finished: string[] = [];
      for (let i = 0; i < 3; i++) finished.push(jobIdOf(await first.call('run_script_batch', napJob([0.01, 0.02]))));
      for (const id of finished) await first.call('collect_results', { job_ids: [id], wait_seconds: 30 });
      const interrupted = jobIdOf(await first.call('run_script_batch', napJob([0.01, 120])));
      await until(
        async () => (await readFile(path.join(stateDir, 'jobs', interrupted, 'results.jsonl'), 'utf8')).length > 0,
        'the first task of the job to be cut off',
        30_000,
      );
      await first.kill();
      const owner = await start(stateDir);
      const running = jobIdOf(await owner.call('run_script_batch', napJob([120, 120])));

      // Damaged jobs: copies of a finished one, each with one file damaged.
      const template = path.join(stateDir, 'jobs', finished[0] ?? '');
      const damagedJobs = new Map<string, string>();
      const quietJobs = new Map<string, string>();
      // The first two every time: the FIFOs that used to hang a server for good.
      const drawn: Array<[string, string]> = [
        ['job.json', 'fifo'],
        ['results.jsonl', 'fifo'],
      ];
      for (let i = 0; i < 16; i++) {
        const id = newId(next);
        const dir = path.join(stateDir, 'jobs', id);
        await cp(template, dir, { recursive: true });
        const meta = JSON.parse(await readFile(path.join(dir, 'job.json'), 'utf8')) as Record<string, unknown>;
        await writeFile(path.join(dir, 'job.json'), JSON.stringify({ ...meta, id }));
        const [target, how] = drawn[i] ?? [
          pick(['job.json', 'job.json', 'results.jsonl', 'inputs.jsonl', 'owner.1', 'runs.log', '']),
          pick(Object.keys(damages)),
        ];
        if (target === '') {
          // The job folder itself: a symlink or a file in its place.
          await rm(dir, { recursive: true, force: true });
          const link = next() < 0.5;
          if (link) await symlink(template, dir);
          else await writeFile(dir, 'not a folder');
          damagedJobs.set(id, link ? 'folder: a symlink' : 'folder: a file');
          continue;
        }
        await damages[how]?.(path.join(dir, target), next, outside);
        // Any damage to job.json shows on listing, and a results file that is no regular file; a
        // damaged results line is skipped (its task unfinished); inputs, owner and runs show at a resume, if ever.
        const shows =
          target === 'job.json' ||
          (target === 'results.jsonl' && ['devZero', 'outside', 'fifo', 'folder'].includes(how));
        (shows ? damagedJobs : quietJobs).set(id, `${target} ${how}`);
      }
      // Shared files: live/, control/, changes.log.
      const shared = [
        path.join(stateDir, 'live', '99999.json'),
        path.join(stateDir, 'live', '99998.json'),
        path.join(stateDir, 'control', 'req-1-fuzz.json'),
        path.join(stateDir, 'control', 'req-2-fuzz.reply.json'),
        path.join(stateDir, 'changes.log'),
      ];
      const sharedDamage = new Map<string, string>();
      for (const file of shared) {
        // live/ and control/ get a FIFO each every time (a reader must never wait on one).
        const how =
          file.endsWith('99998.json') || file.endsWith('req-1-fuzz.json') ? 'fifo' : pick(Object.keys(damages));
        await mkdir(path.dirname(file), { recursive: true });
        await damages[how]?.(file, next, outside);
        sharedDamage.set(path.relative(stateDir, file), how);
      }
      const described = JSON.stringify({
        seed,
        damaged: [...damagedJobs],
        quiet: [...quietJobs],
        shared: [...sharedDamage],
      });

      // A server over it: every good job lists (the live server's one too), collects and resumes.
      const server = await start(stateDir);
      const listed = await server.call('list_jobs', { limit: 200 });
      expect(listed.isError, textOf(listed)).toBeFalsy();
      const jobs = (listed.structuredContent as { jobs: ListedJob[] }).jobs;
      const byId = new Map(jobs.map((job) => [job.job_id, job]));
      for (const id of finished) expect(byId.get(id)?.state, `${id} ${described}`).toBe('succeeded');
      expect(byId.get(interrupted)?.state, described).toBe('interrupted');
      expect(['queued', 'running']).toContain(byId.get(running)?.state);
      for (const [id, what] of damagedJobs) expect(byId.get(id)?.state, `${id}: ${what} ${described}`).toBe('damaged');
      for (const id of [...finished, interrupted]) {
        const collected = await server.call('collect_results', { job_ids: [id], wait_seconds: 0 });
        expect(collected.isError, textOf(collected)).toBeFalsy();
        expect((collected.structuredContent as { results: unknown[] }).results.length).toBeGreaterThan(0);
      }
      const resumed = await server.call('resume_job', { job_id: interrupted });
      expect(resumed.isError, textOf(resumed)).toBeFalsy();
      expect((resumed.structuredContent as { requeued?: number }).requeued).toBe(1);
      const again = await server.call('resume_job', { job_id: finished[1] ?? '', include_failed: true });
      expect(again.isError, textOf(again)).toBeFalsy();
      for (const [id] of damagedJobs) {
        const refused = await server.call('collect_results', { job_ids: [id], wait_seconds: 0 });
        expect(refused.isError).toBe(true);
        expect(textOf(refused)).toContain('JOB_DAMAGED');
      }
      // A job whose inputs or owner file is damaged: listed, and a resume either works or says it is damaged.
      for (const [id, what] of quietJobs) {
        const answer = await server.call('resume_job', { job_id: id, include_failed: true, include_cancelled: true });
        if (answer.isError) expect(textOf(answer), what).toMatch(/JOB_DAMAGED|JOB_NOT_FOUND/);
      }
      // Still answering after all of it.
      const after = await server.call('list_jobs', { limit: 200 });
      expect(after.isError).toBeFalsy();

      // `monitor-mcp jobs --json`: bounded, every good job, the damaged ones as such.
      const { stdout } = await run(process.execPath, [cli, 'jobs', '--json', '--state-dir', stateDir], {
        timeout: 30_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      const table = JSON.parse(stdout) as { jobs: Array<{ id: string; state: string }> };
      const inTable = new Map(table.jobs.map((job) => [job.id, job.state]));
      for (const id of [...finished, interrupted, running]) expect(inTable.has(id), `${id} ${described}`).toBe(true);
      for (const [id, what] of damagedJobs) expect(inTable.get(id), `${id}: ${what}`).toBe('damaged');
      const text = await run(process.execPath, [cli, 'jobs', '--state-dir', stateDir], { timeout: 30_000 });
      expect(text.stdout).toContain(finished[0]);

      // The dashboard: starts, lists the same, opens a good and a damaged job's page.
      const dashboard = await startDashboard(stateDir, ['--port', '0']);
      try {
        const headers = { 'x-monitor-token': dashboard.token };
        const state = (await (await fetch(`${dashboard.base}/api/jobs`, { headers })).json()) as {
          jobs: Array<{ id: string; state: string; damaged?: unknown }>;
        };
        const onPage = new Map(state.jobs.map((job) => [job.id, job]));
        for (const id of [...finished, interrupted, running]) expect(onPage.has(id), id).toBe(true);
        for (const [id] of damagedJobs) expect(onPage.get(id)?.state).toBe('damaged');
        const good = await fetch(`${dashboard.base}/api/jobs/${finished[0] ?? ''}`, { headers });
        expect(good.status).toBe(200);
        const [someDamaged] = damagedJobs.keys();
        if (someDamaged !== undefined) {
          const page = await fetch(`${dashboard.base}/api/jobs/${someDamaged}`, { headers });
          expect(page.status).toBe(200);
          expect(((await page.json()) as { job: { damaged?: unknown } }).job.damaged).toBeDefined();
        }
        expect(dashboard.process.exitCode).toBeNull();
      } finally {
        await dashboard.close();
      }
      // Nothing outside the state directory was written through a planted symlink.
      expect(await readFile(outside, 'utf8')).toBe('{"secret":"outside the state directory"}\n');
      // Every job folder is still there: nothing damaged was deleted.
      const left = new Set(await readdir(path.join(stateDir, 'jobs')));
      for (const id of [...damagedJobs.keys(), ...quietJobs.keys()]) expect(left.has(id), id).toBe(true);
      await server.close();
      await owner.close();
    },
  );
});
