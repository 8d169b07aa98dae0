import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { Descendants, RUN_TOKEN_VAR } from '../../../src/pools/script/descendants.js';
import { makeTempDir, testProcesses } from '../../helpers/client.js';
import { alive, killQuietly, until } from '../../helpers/scripts.js';

let stateDir: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  stateDir = await makeTempDir('monitor-descendants-');
});

afterEach(() => {
  for (const child of started.splice(0)) if (child.pid !== undefined) killQuietly(child.pid);
});

afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

/** A process that carries `token` as a worker (and all it starts) would: detached, in a session of its own. */
function startWithToken(token: string): number {
  const child = spawn('sleep', ['60'], {
    env: { ...process.env, [RUN_TOKEN_VAR]: token },
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  // Reaped by this process once killed, so it does not linger as a zombie.
  child.on('exit', () => undefined);
  started.push(child);
  if (child.pid === undefined) throw new Error('sleep did not start');
  return child.pid;
}

describe('Descendants', () => {
  it('ends the processes of a run once it has ended, and every process of its own at close', async () => {
    const descendants = new Descendants({ stateDir, processes: testProcesses, log: silentLogger, procDir: '/proc' });
    expect(descendants.enabled).toBe(true);
    const first = descendants.begin();
    const second = descendants.begin();
    const firstPid = startWithToken(first.env[RUN_TOKEN_VAR] ?? '');
    const secondPid = startWithToken(second.env[RUN_TOKEN_VAR] ?? '');
    await until(() => alive(firstPid) && alive(secondPid), 'both to start');
    first.ended(true);
    await until(() => !alive(firstPid), "the ended run's process to be ended", 10_000);
    expect(alive(secondPid)).toBe(true);
    await descendants.close();
    await until(() => !alive(secondPid), "the running run's process to be ended at close", 10_000);
  });

  it('at start, ends what gone servers on the same state dir left, and nothing else', async () => {
    const mine = new Descendants({ stateDir, processes: testProcesses, log: silentLogger, procDir: '/proc' });
    const key = (mine.begin().env[RUN_TOKEN_VAR] ?? '').split('.')[0];
    const otherKey = (
      new Descendants({
        stateDir: `${stateDir}-other`,
        processes: testProcesses,
        log: silentLogger,
        procDir: '/proc',
      }).begin().env[RUN_TOKEN_VAR] ?? ''
    ).split('.')[0];
    // pid_max is at most 2^22: no process has this pid.
    const goneServer = 4_194_999;
    const orphan = startWithToken(`${key}.${goneServer}.123.abc.1`);
    const otherStateDir = startWithToken(`${otherKey}.${goneServer}.123.abc.1`);
    // This process, with its real start time: a live server (another instance in this process).
    const liveServer = startWithToken(`${key}.${process.pid}.${testProcesses.startToken ?? ''}.def.1`);
    // This pid with another start time: an earlier server that had the pid.
    const earlierServer = startWithToken(`${key}.${process.pid}.1.abc.2`);
    await until(() => [orphan, otherStateDir, liveServer, earlierServer].every(alive), 'all four to start');
    expect(await mine.recover()).toBe(2);
    await until(() => !alive(orphan) && !alive(earlierServer), "the gone servers' processes to be ended", 10_000);
    expect(alive(otherStateDir)).toBe(true);
    expect(alive(liveServer)).toBe(true);
    await mine.close();
  });

  it('after a run ends, hands the adopter the processes whose parent it is, with their starts, and kills none of them', async () => {
    const handed: Array<readonly [number, string]> = [];
    // This test process plays the adopter: what it starts is its child.
    const adopter = {
      pid: process.pid,
      sweep: (found: ReadonlyArray<readonly [number, string]>) => handed.push(...found),
    };
    const descendants = new Descendants({
      stateDir,
      processes: testProcesses,
      log: silentLogger,
      procDir: '/proc',
      adopter: () => adopter,
    });
    const child = spawn('sleep', ['60'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: 'ignore' });
    started.push(child);
    const pid = child.pid ?? 0;
    await until(() => alive(pid), 'the child to start');
    descendants.begin().ended(true);
    await until(() => handed.some(([found]) => found === pid), 'the child to be handed to the adopter', 10_000);
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    expect(handed.find(([found]) => found === pid)?.[1]).toBe(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    expect(alive(pid)).toBe(true);
    await descendants.close();
  });
});
