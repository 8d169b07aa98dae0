import { execFileSync, spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import { silentLogger } from '../src/log.js';
import { liveControl } from '../src/server-live.js';
import { ControlFiles, type ControlReply, type ControlRequest } from '../src/store/control.js';
import { StateLayout } from '../src/store/layout.js';
import { StateReader } from '../src/store/reader.js';
import { JobStore } from '../src/store/store.js';
import { SleepPool, tasks } from './engine/harness.js';
import { type Connected, makeTempDir, repoRoot } from './helpers/client.js';
import { connectWithE2eWorkers, e2eWorkers, killQuietly, submitScripts, until } from './helpers/scripts.js';

let conn: Connected;

beforeAll(async () => {
  conn = await connectWithE2eWorkers();
});

afterAll(async () => {
  await conn.close();
});

/** Writes a dashboard's control request and waits for the server's reply. */
async function ask(action: string, jobId: string): Promise<{ ok: boolean; message: string; by_pid: number }> {
  const dir = new StateLayout(conn.config.stateDir).controlDir;
  const id = `req-${action}-${jobId}`;
  await writeFile(
    path.join(dir, `${id}.json`),
    JSON.stringify({ action, job_id: jobId, at: new Date().toISOString() }),
  );
  const replyFile = path.join(dir, `${id}.reply.json`);
  let reply = '';
  await until(
    async () => {
      reply = await readFile(replyFile, 'utf8').catch(() => '');
      return reply !== '';
    },
    `the reply to ${id}`,
    10_000,
  );
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

describe('live control against hostile requests', () => {
  it('refuses any action but cancel and resume with a reply saying so, and does not take it as a resume', async () => {
    const jobId = await submitScripts(conn, { worker: 'sleep.py', inputs: [{ args: ['60'] }] });
    await conn.call('cancel_job', { job_id: jobId });
    await until(async () => (await stateOf(jobId)) === 'cancelled', 'the job cancelled');
    const refused = await ask('zzz-delete', jobId);
    expect(refused).toMatchObject({ ok: false, by_pid: process.pid });
    expect(refused.message).toMatch(/"zzz-delete" is no action: only cancel and resume are/);
    expect(await stateOf(jobId)).toBe('cancelled');
  });
});

describe('a dashboard request with two servers on one state directory', () => {
  it("is taken by the job's owner while it is alive, and by another server only once the owner is gone", async () => {
    const stateDir = await makeTempDir('monitor-live-owner-');
    const alive = new Set([101, 202]);
    const server = async (pid: number, intervalMs: number) => {
      const ownership = { pid, isAlive: (p: number) => alive.has(p) };
      const engine = new Engine({
        store: new JobStore(stateDir, silentLogger),
        pools: [new SleepPool(4)],
        log: silentLogger,
        retentionDays: 7,
        ownership,
      });
      await engine.init();
      const live = liveControl({
        stateDir,
        version: '0.0.0',
        engine,
        kinds: [],
        ownership,
        log: silentLogger,
        intervalMs,
      });
      await live.start();
      return { engine, live };
    };
    // The owner looks at control/ every 2 s, the other server every 50 ms: the other would always be first.
    const owner = await server(101, 2000);
    const other = await server(202, 50);
    try {
      const job = await owner.engine.submit({ kind: 'sleep', inputs: tasks(2, 60_000), options: {}, concurrency: 2 });
      await owner.engine.cancel(job.id);
      expect(await owner.engine.waitFor([job.id], 10_000)).toBe(true);
      const control = new ControlFiles(stateDir);
      const request = async (action: ControlRequest['action']): Promise<ControlReply | undefined> => {
        const files = await control.ask({ action, job_id: job.id, at: new Date().toISOString() }, Date.now());
        let reply: ControlReply | undefined;
        await until(async () => (reply = await control.reply(files.reply)) !== undefined, `the ${action}`, 15_000);
        await rm(files.reply, { force: true });
        return reply;
      };
      // A cancelled job of a live owner: its owner resumes it (and then, running there, cancels it).
      expect(await request('resume')).toMatchObject({ ok: true, by_pid: 101 });
      expect(await request('cancel')).toMatchObject({ ok: true, by_pid: 101 });
      expect(await owner.engine.waitFor([job.id], 10_000)).toBe(true);
      // The owner gone (its live file with it), the other server takes the job over.
      alive.delete(101);
      await owner.live.close();
      expect(await request('resume')).toMatchObject({ ok: true, by_pid: 202 });
      expect(other.engine.get(job.id)?.state).toBe('running');
      await other.engine.cancel(job.id);
    } finally {
      for (const { live, engine } of [owner, other]) {
        await live.close();
        await engine.close(1000);
      }
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe.skipIf(process.platform === 'win32')('the built server with FIFOs in control/', () => {
  it('keeps its heartbeat, still answers the dashboard once they are gone, and shuts down cleanly', async () => {
    const stateDir = await makeTempDir('monitor-live-fifo-');
    const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
    const child = spawn(
      process.execPath,
      [cli, '--state-dir', stateDir, '--workers-dir', e2eWorkers, '--root', repoRoot, '--log-level', 'info'],
      { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      child.on('exit', (code) => resolve({ code, at: Date.now() })),
    );
    let exitTimer: NodeJS.Timeout | undefined;
    const send = (message: object): boolean => child.stdin.write(`${JSON.stringify(message)}\n`);
    /** The server's answer to request `id`, once it came (one JSON message a line). */
    const answer = (id: number): string | undefined =>
      // The last piece may be a line still coming: only whole lines count.
      stdout
        .split('\n')
        .slice(0, -1)
        .find((line) => line.startsWith('{') && (JSON.parse(line) as { id?: unknown }).id === id);
    try {
      send({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'fifo-test', version: '0' } },
      });
      await until(() => answer(1) !== undefined, 'the answer to initialize', 20_000);
      send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      const layout = new StateLayout(stateDir);
      const pid = child.pid ?? 0;
      await beats(layout.liveFile(pid), 1, 30_000);
      execFileSync('mkfifo', [path.join(layout.controlDir, 'req-fifo.json')]);
      execFileSync('mkfifo', [path.join(layout.controlDir, 'fifo')]);
      await beats(layout.liveFile(pid), 3, 20_000);
      await until(
        () => /removed .*req-fifo\.json: it is a FIFO, not a regular file/.test(stderr),
        'the log line',
        10_000,
      );
      await rm(path.join(layout.controlDir, 'fifo'));
      await beats(layout.liveFile(pid), 2, 20_000);
      const control = new ControlFiles(stateDir);
      // Refused, as any server does with a wrong request: what matters is that it is looked at and answered again.
      const files = await control.ask(
        { action: 'stop' as ControlRequest['action'], job_id: 'job_CCCCCCCCCCCCCCCCCCCCCC', at: '' },
        Date.now(),
      );
      let reply: ControlReply | undefined;
      await until(async () => (reply = await control.reply(files.reply)) !== undefined, 'the answer', 20_000);
      expect(reply).toMatchObject({ ok: false, by_pid: pid });
      const ending = Date.now();
      child.stdin.end();
      const { code, at } = await Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          exitTimer = setTimeout(() => reject(new Error('no exit within 20 s')), 20_000);
        }),
      ]);
      expect(code).toBe(0);
      // Its forced exit comes after 8 s: a clean shutdown is well before.
      expect(at - ending).toBeLessThan(6000);
    } finally {
      clearTimeout(exitTimer);
      killQuietly(child.pid ?? 0);
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 120_000);
});

/** Waits for `count` new heartbeats in a live file (read straight from disk). */
async function beats(file: string, count: number, timeoutMs: number): Promise<void> {
  const heartbeat = async (): Promise<string> =>
    readFile(file, 'utf8').then(
      (text) => (JSON.parse(text) as { heartbeat_at: string }).heartbeat_at,
      () => '',
    );
  const first = await heartbeat();
  const seen = new Set<string>();
  await until(
    async () => {
      const now = await heartbeat();
      if (now !== '' && now !== first) seen.add(now);
      return seen.size >= count;
    },
    `${count} heartbeats in ${file}`,
    timeoutMs,
    50,
  );
}
