import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ControlRequest, LivePublisher } from '../../src/live/publisher.js';
import { silentLogger } from '../../src/log.js';
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

function publisher(stateDir: string, pid: number, acted: ControlRequest[], handles = true): LivePublisher {
  const live = new LivePublisher({
    stateDir,
    pid,
    version: '0.0.0',
    log: silentLogger,
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
});
