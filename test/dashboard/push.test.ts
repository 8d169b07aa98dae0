import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DashboardData } from '../../src/dashboard/data.js';
import { Dashboard } from '../../src/dashboard/http.js';
import { EventStreams, type StreamLimits } from '../../src/dashboard/push.js';
import { LivePublisher } from '../../src/live/publisher.js';
import { silentLogger } from '../../src/log.js';
import type { TaskRecord } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { until } from '../helpers/scripts.js';

/** What the dashboard pushes to open pages, and how it bounds them (in process, real sockets, real state directory). */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const done of cleanups.splice(0).reverse()) await done();
});

const OWNER = 4243;
const TOKEN = 'p'.repeat(43);

/** A state directory with `jobs` jobs run by a live server (pid OWNER), no result yet: the first of `tasks` tasks, the others of 3. */
async function stateWith(jobs: number, tasks: number) {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'monitor-dashboard-push-'));
  cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
  const store = new JobStore(stateDir, silentLogger);
  await store.init();
  const ids: string[] = [];
  for (let i = 0; i < jobs; i++) {
    const id = JobStore.newJobId();
    const createdAt = new Date(Date.now() - 5000).toISOString();
    const taskCount = i === 0 ? tasks : 3;
    await store.createJob(
      { id, kind: 'script', label: `job ${i}`, createdAt, taskCount, concurrency: 2, ownerPid: OWNER },
      Array.from({ length: taskCount }, (_, k) => k),
      { pid: OWNER },
    );
    ids.push(id);
  }
  return { stateDir, store, ids };
}

const result = (index: number, message = ''): TaskRecord => ({
  index,
  state: 'failed',
  attempt: 1,
  finishedAt: new Date().toISOString(),
  error: { code: `E${index}`, message: `task ${index} failed ${message}` },
});

async function startBoard(stateDir: string, extra: { limits?: Partial<StreamLimits>; now?: () => number } = {}) {
  const dashboard = new Dashboard({
    data: new DashboardData(stateDir, (pid) => pid === OWNER),
    stateDir,
    host: '127.0.0.1',
    port: 0,
    assets: {},
    log: silentLogger,
    token: TOKEN,
    pollMs: 50,
    ...extra,
  });
  await dashboard.start();
  cleanups.push(() => dashboard.close());
  return { dashboard, port: Number(new URL(dashboard.url).port) };
}

/** An EventSource's view of /api/events: the events by name, and the comments (heartbeats). */
function follow(port: number) {
  const seen = { status: 0, events: [] as Array<{ name: string; data: string }>, comments: 0 };
  let buffer = '';
  const req = request(
    { host: '127.0.0.1', port, path: '/api/events', headers: { 'x-monitor-token': TOKEN } },
    (res) => {
      seen.status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(':')) seen.comments++;
          const name = /^event: (\w+)$/m.exec(block)?.[1];
          if (name) seen.events.push({ name, data: /^data: (.*)$/m.exec(block)?.[1] ?? '' });
        }
      });
    },
  );
  req.on('error', () => undefined);
  req.end();
  cleanups.push(() => {
    req.destroy();
  });
  return seen;
}

/** A client that asks for the event stream, reads its first chunk (the status line), then never reads again. */
function stalled(port: number): Promise<{ socket: Socket; status: number; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-monitor-token: ${TOKEN}\r\n\r\n`),
    );
    const closed = new Promise<void>((done) => socket.on('close', () => done()));
    socket.on('error', () => undefined);
    cleanups.push(() => {
      socket.destroy();
    });
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      resolve({ socket, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString())?.[1] ?? 0), closed });
    });
    socket.once('close', () => reject(new Error('closed before any answer')));
  });
}

describe('the dashboard pushes only what a person sees change', () => {
  it("sends a running job's state once, nothing while only its elapsed time grows, then the next result", async () => {
    const { stateDir, store, ids } = await stateWith(1, 3);
    let polls = 0;
    const { port } = await startBoard(stateDir, {
      now: () => {
        polls++;
        return Date.now();
      },
    });
    const page = follow(port);
    await until(() => page.events.length > 0, 'the first state', 10_000);
    expect(page.events.map((e) => e.name)).toEqual(['state']);
    const first = JSON.parse(page.events[0]?.data ?? '{}') as { jobs: Array<{ state: string; elapsed_ms: number }> };
    expect(first.jobs[0]?.elapsed_ms).toBeGreaterThanOrEqual(5000);
    // Ten more polls, each with a later clock (the job's elapsed time grows): no event.
    const after = polls;
    await until(() => polls >= after + 10, 'ten polls', 20_000, 20);
    expect(page.events.map((e) => e.name)).toEqual(['state']);
    await store.appendResult(ids[0] ?? '', result(0));
    await until(() => page.events.length > 1, 'the state after a result', 10_000);
    expect(page.events.map((e) => e.name)).toEqual(['state', 'state']);
    const next = JSON.parse(page.events[1]?.data ?? '{}') as { jobs: Array<{ failed: number }> };
    expect(next.jobs[0]?.failed).toBe(1);
  }, 40_000);

  it("sends a live server's changed cards alone (a small `live` event), and a heartbeat comment to a quiet page", async () => {
    const { stateDir } = await stateWith(1, 3);
    let busy = 0;
    const live = new LivePublisher({
      stateDir,
      pid: OWNER,
      version: '0.0.0',
      log: silentLogger,
      intervalMs: 100,
      figures: () => ({ script: [{ name: 'scripts', busy, limit: 4 }] }),
      handles: () => Promise.resolve(false),
      act: () => Promise.resolve({ ok: false, message: '', by_pid: OWNER }),
    });
    await live.start();
    cleanups.push(() => live.close());
    const { port } = await startBoard(stateDir, { limits: { heartbeatMs: 100 } });
    const page = follow(port);
    await until(() => page.events.length > 0, 'the first state', 10_000);
    busy = 3;
    await until(() => page.events.some((e) => e.name === 'live'), 'a live event', 10_000);
    const body = JSON.parse(page.events.find((e) => e.name === 'live')?.data ?? '{}') as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['capacity', 'generated_at', 'servers']);
    expect(body.capacity).toEqual([{ name: 'scripts', busy: 3, limit: 4, kind: 'script', server_pid: OWNER }]);
    // The live file is rewritten every 100 ms (a new heartbeat_at each time): no new state for that,
    // and the quiet stream hears a comment every 100 ms.
    const comments = page.comments;
    await until(() => page.comments >= comments + 3, 'three heartbeat comments', 10_000);
    expect(page.events.filter((e) => e.name === 'state')).toHaveLength(1);
  }, 40_000);
});

describe('the dashboard keeps polling', () => {
  it('logs a poll that throws once while it fails alike, and sends the state once a poll succeeds again', async () => {
    const { stateDir } = await stateWith(1, 3);
    let failures = 5;
    class Flaky extends DashboardData {
      override async snapshot(now: number) {
        if (failures-- > 0) throw new Error('disk on fire');
        return super.snapshot(now);
      }
    }
    const warnings: string[] = [];
    const dashboard = new Dashboard({
      data: new Flaky(stateDir, (pid) => pid === OWNER),
      stateDir,
      host: '127.0.0.1',
      port: 0,
      assets: {},
      log: { ...silentLogger, warn: (line) => warnings.push(line) },
      token: TOKEN,
      pollMs: 50,
    });
    await dashboard.start();
    cleanups.push(() => dashboard.close());
    const page = follow(Number(new URL(dashboard.url).port));
    await until(() => page.events.length > 0, 'a state once the polls succeed', 10_000);
    expect(warnings).toEqual([`dashboard: reading ${stateDir}: Error: disk on fire`]);
  }, 30_000);
});

describe('the dashboard bounds its event streams', () => {
  it('answers 503 past its cap of open streams, saying why, and frees the place of a stream that closes', async () => {
    const { stateDir } = await stateWith(1, 1);
    const { dashboard, port } = await startBoard(stateDir);
    const clients = await Promise.all(Array.from({ length: 34 }, () => stalled(port)));
    expect(clients.filter((c) => c.status === 200)).toHaveLength(32);
    expect(clients.filter((c) => c.status === 503)).toHaveLength(2);
    expect(dashboard.streamStats().open).toBe(32);
    const refused = await fetch(`http://127.0.0.1:${port}/api/events`, { headers: { 'x-monitor-token': TOKEN } });
    expect(refused.status).toBe(503);
    expect(await refused.text()).toBe(
      'Too many live pages: this dashboard follows at most 32 at once. Close some of its tabs, then reload.\n',
    );
    clients.find((c) => c.status === 200)?.socket.destroy();
    await until(() => dashboard.streamStats().open === 31, 'a closed stream forgotten', 10_000);
    expect((await stalled(port)).status).toBe(200);
    // The rest of the dashboard answers as ever.
    const jobs = await fetch(`http://127.0.0.1:${port}/api/jobs`, { headers: { 'x-monitor-token': TOKEN } });
    expect(jobs.status).toBe(200);
  }, 40_000);

  it('drops clients that never read once their socket is full, while state keeps changing, and keeps serving', async () => {
    // A result every 20 ms, each of a new error code (its own line of ~250 bytes in the job's failures):
    // the state changes every poll and grows, some MB a second to every client.
    const { stateDir, store, ids } = await stateWith(20, 5000);
    const { dashboard, port } = await startBoard(stateDir, { limits: { max: 6, drainMs: 300 } });
    const clients = await Promise.all(Array.from({ length: 6 }, () => stalled(port)));
    expect(clients.map((c) => c.status)).toEqual([200, 200, 200, 200, 200, 200]);
    let index = 0;
    let writing = true;
    const writer = (async () => {
      while (writing && index < 5000) {
        await store.appendResult(ids[0] ?? '', result(index++, 'x'.repeat(200)));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    cleanups.push(async () => {
      writing = false;
      await writer;
    });
    let most = 0;
    await until(
      () => {
        most = Math.max(most, dashboard.streamStats().buffered);
        return dashboard.streamStats().open === 0;
      },
      'every stalled client dropped',
      60_000,
      20,
    );
    // Their sockets were ended by the server: once read, each ends (what the kernel held, then EOF).
    for (const client of clients) client.socket.resume();
    await Promise.all(clients.map((c) => c.closed));
    // Never more than about one state per client waits in the process (the socket holds the rest).
    const state = JSON.stringify(await (await fetch(`http://127.0.0.1:${port}/api/jobs?token=${TOKEN}`)).json());
    expect(most).toBeLessThanOrEqual(6 * (state.length + 4096));
    // A page that reads gets its stream as ever.
    const page = follow(port);
    await until(() => page.events.length > 0, 'a state for a new page', 10_000);
    expect(page.status).toBe(200);
  }, 90_000);
});

describe('EventStreams (real sockets)', () => {
  it('keeps at most one event per client in memory while its socket is full, and drops it after drainMs', async () => {
    const event = `event: state\ndata: ${'x'.repeat(256 * 1024)}\n\n`;
    const streams = new EventStreams(() => event, { max: 32, drainMs: 300, heartbeatMs: 60_000 });
    const server = createServer((req, res) => streams.open(req, res, {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          streams.close();
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    const port = (server.address() as AddressInfo).port;
    const slow = await Promise.all(Array.from({ length: 8 }, () => stalled(port)));
    let read = 0;
    const reader = connect(port, '127.0.0.1', () =>
      reader.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
    );
    reader.on('data', (chunk: Buffer) => {
      read += chunk.length;
    });
    cleanups.push(() => {
      reader.destroy();
    });
    await until(() => streams.stats().open === 9, 'nine streams', 10_000);
    let most = 0;
    let sent = 0;
    while (streams.stats().open > 1 && sent < 2000) {
      streams.send(event);
      sent++;
      most = Math.max(most, streams.stats().buffered);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const client of slow) client.socket.resume();
    await Promise.all(slow.map((c) => c.closed));
    expect(streams.stats().open).toBe(1);
    expect(most).toBeLessThanOrEqual(9 * (event.length + 1024));
    // The reader kept up: it took more than a stalled socket could hold, and is still served.
    expect(read).toBeGreaterThan(8 * 1024 * 1024);
    expect(reader.destroyed).toBe(false);
  }, 60_000);
});
