import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/registry.js';
import { silentLogger } from '../../../src/log.js';
import { platformFor } from '../../../src/platform/index.js';
import { readProcInfo } from '../../../src/platform/proc.js';
import { processControl, type ProcessControl } from '../../../src/processes.js';
import { GroupRecords, parseJournal } from '../../../src/pools/script/orphans.js';
import { makeTempDir, repoRoot } from '../../helpers/client.js';
import {
  alive,
  eventually,
  fixtureWorkers,
  killQuietly,
  readPids,
  scriptConfig,
  scriptPool,
} from '../../helpers/scripts.js';

let config: Config;
let workDir: string;
let recordsDir: string;

const kill = (pid: number, signal: NodeJS.Signals | 0): void => {
  process.kill(pid, signal);
};
/** This test process as the server that starts next. */
const thisServer: ProcessControl = processControl(process.pid, kill);

beforeAll(async () => {
  config = await scriptConfig((c) => {
    c.allowedRoots = [repoRoot, '/tmp'];
  });
  recordsDir = path.join(config.stateDir, 'pids');
  workDir = await makeTempDir('monitor-orphans-');
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
  await rm(config.stateDir, { recursive: true, force: true });
});

/** The pid of a process that has exited: a server SIGKILLed before this start. */
async function deadPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  const pid = child.pid ?? 0;
  expect(pid).toBeGreaterThan(1);
  expect(thisServer.isAlive(pid)).toBe(false);
  return pid;
}

/** A fixture worker in a process group of its own, like the pool starts them; returns its pids once it wrote them. */
async function startGroup(worker: string): Promise<number[]> {
  const pidFile = path.join(workDir, `${worker}-${Date.now()}-${Math.random()}`);
  const child = spawn('python3', [path.join(fixtureWorkers, worker), pidFile], { detached: true, stdio: 'ignore' });
  child.unref();
  const pids = [child.pid ?? 0, ...(await readPids(pidFile))];
  return [...new Set(pids)];
}

async function journals(): Promise<string[]> {
  return readdir(recordsDir).catch(() => []);
}

/** The groups a server's journal says are running, pgid → start time. */
async function runningIn(owner: number): Promise<Map<number, string>> {
  return parseJournal(await readFile(path.join(recordsDir, `${owner}.groups`), 'utf8').catch(() => ''));
}

async function writeJournal(owner: number, lines: string[]): Promise<void> {
  await mkdir(recordsDir, { recursive: true });
  await writeFile(path.join(recordsDir, `${owner}.groups`), lines.map((line) => `${line}\n`).join(''));
}

const recoverAsNextServer = async (): Promise<void> => {
  await scriptPool(config, process.env, thisServer).recover();
};

describe('orphaned worker groups', { timeout: 20_000 }, () => {
  it('journals each running group under the state dir and its end when the task ends; close removes the journal', async () => {
    const owner = await deadPid();
    const pool = scriptPool(config, process.env, processControl(owner, kill));
    const pidFile = path.join(workDir, `record-${Date.now()}`);
    const pending = pool.run({
      jobId: 'job_records',
      index: 0,
      input: { args: [pidFile] },
      options: { worker: 'stubborn.py', cwd: repoRoot, timeout_seconds: 1 },
      outputDir: workDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    const [parent = 0, child = 0] = await readPids(pidFile);
    try {
      const info = readProcInfo(parent);
      expect(info?.startTime).toMatch(/^\d+$/);
      expect(await eventually(async () => (await runningIn(owner)).get(parent) === info?.startTime, 5000)).toBe(true);
      const result = await pending;
      expect(result.error?.code).toBe('TIMEOUT');
      expect(await eventually(async () => (await runningIn(owner)).size === 0, 5000)).toBe(true);
      expect(await readFile(path.join(recordsDir, `${owner}.groups`), 'utf8')).toBe(
        `+ ${parent} ${info?.startTime}\n- ${parent}\n`,
      );
      // A clean shutdown leaves nothing for the next start.
      await pool.close();
      expect(await journals()).not.toContain(`${owner}.groups`);
    } finally {
      killQuietly(parent);
      killQuietly(child);
    }
  });

  it('keeps a journal small: past 64 KiB it is rewritten with only the groups still running', async () => {
    const owner = await deadPid();
    const [steady = 0, steadyChild = 0] = await startGroup('stubborn.py');
    const [busy = 0, busyChild = 0] = await startGroup('stubborn.py');
    const journal = path.join(recordsDir, `${owner}.groups`);
    try {
      const records = new GroupRecords({
        dir: recordsDir,
        processes: processControl(owner, kill),
        killGraceMs: 500,
        log: silentLogger,
      });
      records.track(steady);
      // ~30 bytes a task: 5000 tasks pass the limit twice.
      for (let i = 0; i < 5000; i++) {
        records.track(busy)();
        if (i % 100 === 0) await records.flushed();
      }
      await records.flushed();
      const text = await readFile(journal, 'utf8');
      expect(text.length).toBeLessThan(64 * 1024);
      expect([...parseJournal(text)]).toEqual([[steady, readProcInfo(steady)?.startTime]]);
      expect(await journals()).not.toContain(`${owner}.groups.tmp`);
    } finally {
      await rm(journal, { force: true });
      for (const pid of [steady, steadyChild, busy, busyChild]) killQuietly(pid);
    }
  });

  it('ends the whole group of a dead server on recover, with SIGKILL after the grace when SIGTERM is ignored', async () => {
    const owner = await deadPid();
    // stubborn.py ignores SIGTERM and forks a child that does too, all in its own group.
    const [leader = 0, child = 0] = await startGroup('stubborn.py');
    try {
      const dead = new GroupRecords({
        dir: recordsDir,
        processes: processControl(owner, kill),
        killGraceMs: 500,
        log: silentLogger,
      });
      dead.track(leader);
      await dead.flushed();
      expect((await runningIn(owner)).has(leader)).toBe(true);
      expect(alive(leader) && alive(child)).toBe(true);

      const started = Date.now();
      await recoverAsNextServer();
      expect(Date.now() - started).toBeGreaterThanOrEqual(400);
      expect(await eventually(() => !alive(leader) && !alive(child), 5000)).toBe(true);
      expect(await journals()).not.toContain(`${owner}.groups`);
    } finally {
      killQuietly(leader);
      killQuietly(child);
    }
  });

  it('is not held up by a FIFO or a symlink to /dev/zero planted as a journal: both are read as state, never blocked on', async () => {
    await mkdir(recordsDir, { recursive: true });
    const fifo = path.join(recordsDir, `${await deadPid()}.groups`);
    const made = spawnSync('mkfifo', [fifo]);
    expect(made.status).toBe(0);
    await symlink('/dev/zero', path.join(recordsDir, `${await deadPid()}.groups`));
    // Before, recover() blocked for good opening the FIFO; the vitest timeout would end it.
    await recoverAsNextServer();
    expect((await journals()).filter((name) => name.endsWith('.groups'))).toEqual([]);
  });

  it("does the same with macOS's way of telling processes apart: spawn times in the journal, checked with ps", async () => {
    const mac = platformFor('darwin');
    const owner = await deadPid();
    const [leader = 0, child = 0] = await startGroup('stubborn.py');
    try {
      const dead = new GroupRecords({
        dir: recordsDir,
        processes: processControl(owner, kill, { platform: mac }),
        killGraceMs: 500,
        log: silentLogger,
      });
      dead.track(leader);
      await dead.flushed();
      const recorded = (await runningIn(owner)).get(leader) ?? '';
      expect(recorded).toMatch(/^t\d+$/);
      // A later process given the leader's pid (a start a minute off) is left alone.
      await writeJournal(owner, [`+ ${leader} t${Number(recorded.slice(1)) - 60}`]);
      const next = new GroupRecords({
        dir: recordsDir,
        processes: processControl(process.pid, kill, { platform: mac }),
        killGraceMs: 500,
        log: silentLogger,
      });
      await next.recover();
      expect(alive(leader) && alive(child)).toBe(true);
      // The group it recorded is ended, SIGKILL after the grace as on Linux.
      await writeJournal(owner, [`+ ${leader} ${recorded}`]);
      await next.recover();
      expect(await eventually(() => !alive(leader) && !alive(child), 5000)).toBe(true);
      expect(await journals()).not.toContain(`${owner}.groups`);
    } finally {
      killQuietly(leader);
      killQuietly(child);
    }
  });

  it("ends what a dead server's worker left in its group after the worker itself exited", async () => {
    const owner = await deadPid();
    // leave_child.py forks a sleeping child into its group and exits at once.
    const pids = await startGroup('leave_child.py');
    const [leader = 0] = pids;
    const child = pids.at(-1) ?? 0;
    try {
      expect(child).not.toBe(leader);
      expect(await eventually(() => !alive(leader), 5000)).toBe(true);
      expect(alive(child)).toBe(true);
      // The leader is gone, so its start time cannot matter: the group id still names its members.
      await writeJournal(owner, [`+ ${leader} 12345`]);
      await recoverAsNextServer();
      expect(await eventually(() => !alive(child), 5000)).toBe(true);
      expect(await journals()).not.toContain(`${owner}.groups`);
    } finally {
      killQuietly(child);
    }
  });

  it("tells a live server from a later process given its pid, by the start time in the journal's first line", async () => {
    const dir = path.join(workDir, `journals-${Date.now()}`);
    const [leader = 0, child = 0] = await startGroup('stubborn.py');
    try {
      // This test process plays a live server; the one recovering is another (a dead pid will do).
      const live = new GroupRecords({ dir, processes: thisServer, killGraceMs: 500, log: silentLogger });
      live.track(leader);
      await live.flushed();
      const journal = path.join(dir, `${process.pid}.groups`);
      const text = await readFile(journal, 'utf8');
      expect(text.split('\n')[0]).toBe(`@ ${readProcInfo(process.pid)?.startTime}`);
      const recovering = (): Promise<void> =>
        new GroupRecords({
          dir,
          processes: processControl(1 << 22, kill),
          killGraceMs: 500,
          log: silentLogger,
        }).recover();

      await recovering();
      expect(alive(leader) && alive(child)).toBe(true);
      expect(await readdir(dir)).toContain(`${process.pid}.groups`);

      // The same pid, started at another time: the server that wrote the journal is gone.
      await writeFile(journal, text.replace(/^@ \d+/, '@ 1'));
      await recovering();
      expect(await eventually(() => !alive(leader) && !alive(child), 5000)).toBe(true);
      expect(await readdir(dir)).not.toContain(`${process.pid}.groups`);
      await live.close();
    } finally {
      killQuietly(leader);
      killQuietly(child);
    }
  });

  it('leaves alone a group whose leader pid now belongs to a process started at another time, and groups of live servers', async () => {
    const owner = await deadPid();
    const [reused = 0, reusedChild = 0] = await startGroup('stubborn.py');
    const [otherServers = 0, otherChild = 0] = await startGroup('stubborn.py');
    // A live server: any running process stands for one.
    const liveOwner = otherChild;
    try {
      const start = readProcInfo(reused)?.startTime ?? '';
      const otherStart = readProcInfo(otherServers)?.startTime ?? '';
      const wrongStart = String(Number(start) - 1);
      await writeJournal(owner, [`+ ${reused} ${wrongStart}`]);
      await writeJournal(liveOwner, [`+ ${otherServers} ${otherStart}`]);

      await recoverAsNextServer();
      // Give a wrongly sent signal time to land.
      await eventually(() => false, 300);
      expect([reused, reusedChild, otherServers, otherChild].map(alive)).toEqual([true, true, true, true]);
      const left = await journals();
      expect(left).not.toContain(`${owner}.groups`);
      expect(left).toContain(`${liveOwner}.groups`);
    } finally {
      for (const pid of [reused, reusedChild, otherServers, otherChild]) killQuietly(pid);
    }
  });
});
