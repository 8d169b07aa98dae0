import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ControlRequest, LivePublisher } from '../../src/live/publisher.js';
import { createLogger, type Logger, silentLogger } from '../../src/log.js';
import { CONTROL_STALE_MS, REQUEST_STALE_MS } from '../../src/store/control.js';
import { StateLayout } from '../../src/store/layout.js';
import { StateReader } from '../../src/store/reader.js';
import { makeTempDir } from '../helpers/client.js';
import { until } from '../helpers/scripts.js';

const dirs: string[] = [];
const readLiveServers = (stateDir: string, now: number) => new StateReader(stateDir, silentLogger).liveServers(now);
const liveDir = (stateDir: string): string => new StateLayout(stateDir).liveDir;
const controlDir = (stateDir: string): string => new StateLayout(stateDir).controlDir;
const publishers: LivePublisher[] = [];
afterEach(async () => {
  for (const publisher of publishers.splice(0)) await publisher.close();
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

function publisher(
  stateDir: string,
  pid: number,
  acted: ControlRequest[],
  handles = true,
  log: Logger = silentLogger,
): LivePublisher {
  const live = new LivePublisher({
    stateDir,
    pid,
    version: '0.0.0',
    log,
    intervalMs: 50,
    figures: () => ({ llm: [{ name: 'lmstudio', busy: 2, limit: 4 }] }),
    handles: () => Promise.resolve(handles),
    act: (request) => {
      acted.push(request);
      return Promise.resolve({ ok: true, message: `done by ${pid}`, by_pid: pid });
    },
  });
  publishers.push(live);
  return live;
}

describe('LivePublisher', () => {
  it("beats its live file with the pools' figures, which readers see until it closes or goes stale", async () => {
    const stateDir = await makeTempDir('monitor-live-');
    dirs.push(stateDir);
    const live = publisher(stateDir, 4242, []);
    await live.start();
    const [seen] = await readLiveServers(stateDir, Date.now());
    expect(seen).toMatchObject({
      pid: 4242,
      version: '0.0.0',
      pools: { llm: [{ name: 'lmstudio', busy: 2, limit: 4 }] },
    });
    const first = seen?.heartbeat_at ?? '';
    await until(
      async () => (await readLiveServers(stateDir, Date.now()))[0]?.heartbeat_at !== first,
      'a second beat',
      5000,
    );
    // A server killed without closing leaves its file: past 5 s without a beat it is not live.
    expect(await readLiveServers(stateDir, Date.now() + 10_000)).toEqual([]);
    await live.close();
    expect(await readdir(liveDir(stateDir))).toEqual([]);
  });

  it('of two servers that could both act on a control request, exactly one does, and answers it', async () => {
    const stateDir = await makeTempDir('monitor-live-');
    dirs.push(stateDir);
    const acted: ControlRequest[] = [];
    await publisher(stateDir, 1001, acted).start();
    await publisher(stateDir, 1002, acted).start();
    await publisher(stateDir, 1003, acted, false).start();
    for (let i = 0; i < 10; i++)
      await writeFile(
        path.join(controlDir(stateDir), `req-${i}.json`),
        JSON.stringify({ action: 'cancel', job_id: `job_${String(i).padStart(22, 'A')}`, at: '' }),
      );
    await until(
      async () => (await readdir(controlDir(stateDir))).filter((name) => name.endsWith('.reply.json')).length === 10,
      'ten replies',
      10_000,
    );
    expect(acted).toHaveLength(10);
    expect(new Set(acted.map((request) => request.job_id)).size).toBe(10);
    const replies = await Promise.all(
      [...Array(10).keys()].map(
        async (i) =>
          JSON.parse(await readFile(path.join(controlDir(stateDir), `req-${i}.reply.json`), 'utf8')) as {
            by_pid: number;
          },
      ),
    );
    expect(replies.every((reply) => reply.by_pid === 1001 || reply.by_pid === 1002)).toBe(true);
    expect((await readdir(controlDir(stateDir))).filter((name) => !name.endsWith('.reply.json'))).toEqual([]);
  });

  it.skipIf(process.platform === 'win32')(
    'keeps beating with FIFOs in control/ (named like a request and otherwise), takes requests after, and closes at once',
    async () => {
      const stateDir = await makeTempDir('monitor-live-');
      dirs.push(stateDir);
      const acted: ControlRequest[] = [];
      const lines: string[] = [];
      const live = publisher(
        stateDir,
        4242,
        acted,
        true,
        createLogger((line) => lines.push(line), 'debug'),
      );
      await live.start();
      const control = controlDir(stateDir);
      execFileSync('mkfifo', [path.join(control, 'req-fifo.json')]);
      execFileSync('mkfifo', [path.join(control, 'fifo')]);
      await beats(stateDir, 4242, 5, 10_000);
      await until(
        async () => lines.some((line) => /removed .*req-fifo\.json: it is a FIFO, not a regular file/.test(line)),
        'the log line',
        5000,
      );
      await rm(path.join(control, 'fifo'));
      await beats(stateDir, 4242, 2, 10_000);
      await writeFile(
        path.join(control, 'req-after.json'),
        JSON.stringify({ action: 'cancel', job_id: 'job_BBBBBBBBBBBBBBBBBBBBBB', at: '' }),
      );
      await until(async () => acted.length === 1, 'the request after the FIFOs', 10_000);
      const closing = Date.now();
      await live.close();
      expect(Date.now() - closing).toBeLessThan(2000);
      expect(await readdir(liveDir(stateDir))).toEqual([]);
    },
    40_000,
  );

  it.skipIf(process.platform === 'win32')(
    'writes its live file over a symlink or a FIFO planted in its way, never through them',
    async () => {
      const stateDir = await makeTempDir('monitor-live-');
      dirs.push(stateDir);
      const victim = path.join(stateDir, 'victim.txt');
      await writeFile(victim, 'precious');
      await mkdir(liveDir(stateDir));
      await symlink(victim, path.join(liveDir(stateDir), '4242.json'));
      execFileSync('mkfifo', [path.join(liveDir(stateDir), '4242.json.tmp')]);
      const live = publisher(stateDir, 4242, []);
      await within(live.start(), 5000, 'the first beat');
      await beats(stateDir, 4242, 2, 10_000);
      expect(await readFile(victim, 'utf8')).toBe('precious');
      expect((await lstat(path.join(liveDir(stateDir), '4242.json'))).isFile()).toBe(true);
    },
    30_000,
  );

  it('removes, once it runs, requests nobody took and replies nobody read past their bounds', async () => {
    const stateDir = await makeTempDir('monitor-live-');
    dirs.push(stateDir);
    const control = controlDir(stateDir);
    await mkdir(control, { recursive: true });
    const old = async (name: string, ageMs: number): Promise<void> => {
      await writeFile(path.join(control, name), JSON.stringify({ action: 'cancel', job_id: 'job_x', at: '' }));
      const when = new Date(Date.now() - ageMs);
      await utimes(path.join(control, name), when, when);
    };
    await old('req-1.reply.json', CONTROL_STALE_MS + 1000);
    await old('req-2.json', REQUEST_STALE_MS + 1000);
    await old('req-3.reply.json', 1000);
    await publisher(stateDir, 4242, [], false).start();
    await until(async () => (await readdir(control)).length === 1, 'the old files removed', 10_000);
    expect(await readdir(control)).toEqual(['req-3.reply.json']);
  });
});

/** Waits for `count` new heartbeats of the live file of `pid` (read straight from disk). */
async function beats(stateDir: string, pid: number, count: number, timeoutMs: number): Promise<void> {
  const file = path.join(liveDir(stateDir), `${pid}.json`);
  const heartbeat = async (): Promise<string> =>
    readFile(file, 'utf8').then(
      (text) => (JSON.parse(text) as { heartbeat_at: string }).heartbeat_at,
      () => '',
    );
  const seen = new Set([await heartbeat()]);
  await until(
    async () => {
      seen.add(await heartbeat());
      return seen.size > count;
    },
    `${count} heartbeats`,
    timeoutMs,
    20,
  );
}

/** `promise`, or a failure naming `what` once `ms` pass. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still blocked after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
