import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LINUX, platformFor } from '../../src/platform/index.js';
import { parseElapsed, START_TOLERANCE_SECONDS } from '../../src/platform/posix.js';
import { readProcInfo } from '../../src/platform/proc.js';

const kill = (pid: number, signal: NodeJS.Signals | 0): void => {
  process.kill(pid, signal);
};

async function exitedPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid ?? 0;
}

describe("the macOS platform (its `ps` code run against this system's real ps)", () => {
  const mac = platformFor('darwin');

  it('reads elapsed times as ps prints them', () => {
    expect(parseElapsed('   00:05')).toBe(5);
    expect(parseElapsed('01:02:03')).toBe(3723);
    expect(parseElapsed('2-01:02:03')).toBe(2 * 86_400 + 3723);
    expect(parseElapsed('garbage')).toBeUndefined();
  });

  it('tells this process by its start, as `ps -o etime=` gives it, from a process started later with the same pid', async () => {
    const startedAt = Date.now() - process.uptime() * 1000;
    const own = mac.ownStartToken(process.pid, startedAt) ?? '';
    const seen = mac.processState(process.pid);
    expect(seen?.zombie).toBe(false);
    expect(mac.sameStart(seen?.token ?? '', own)).toBe(true);
    // The same pid with a start a minute off is another process.
    expect(mac.sameStart(seen?.token ?? '', `t${Math.round(startedAt / 1000) - 60}`)).toBe(false);
    expect(mac.sameStart('t100', `t${100 + START_TOLERANCE_SECONDS}`)).toBe(true);
    expect(mac.processState(await exitedPid())).toBeUndefined();
  });

  it('keeps state and config under ~/Library/Application Support, or the XDG folders when they are set', () => {
    expect(mac.folders({}, '/Users/ann')).toMatchObject({
      stateDir: '/Users/ann/Library/Application Support/monitor-mcp/state',
      configFile: '/Users/ann/Library/Application Support/monitor-mcp/config.json',
    });
    expect(mac.folders({ XDG_STATE_HOME: '/x/state', XDG_CONFIG_HOME: '/x/config' }, '/Users/ann')).toMatchObject({
      stateDir: '/x/state/monitor-mcp',
      configFile: '/x/config/monitor-mcp/config.json',
    });
    expect(mac.pathRules).toEqual({ flavor: 'posix', caseInsensitive: true });
    expect(mac.procDir).toBeUndefined();
    expect(mac.spawnHelper).toBe(false);
    expect(mac.openUrl('http://x/')).toEqual({ file: 'open', args: ['http://x/'] });
  });

  it('stops a process group as Linux does', async () => {
    const leader = spawn('sleep', ['60'], { stdio: 'ignore', ...mac.workerSpawnOptions });
    const exited = new Promise((resolve) => leader.on('exit', resolve));
    expect(mac.signalTree(kill, leader.pid ?? 0, 0)).toBe(true);
    expect(mac.signalTree(kill, leader.pid ?? 0, 'SIGKILL')).toBe(true);
    await exited;
    expect(mac.signalTree(kill, 1, 'SIGKILL')).toBe(false);
  });
});

describe.skipIf(process.platform !== 'linux')('the Linux platform (skipped elsewhere: it reads /proc)', () => {
  it('takes start tokens from /proc, exact, and names the XDG folders', async () => {
    expect(LINUX.processState(process.pid)?.token).toBe(readProcInfo(process.pid)?.startTime);
    expect(LINUX.spawnToken(process.pid, 0)).toBe(readProcInfo(process.pid)?.startTime);
    expect(LINUX.processState(await exitedPid())).toBeUndefined();
    expect(LINUX.sameStart('123', '124')).toBe(false);
    expect(LINUX.folders({}, '/home/ann')).toMatchObject({
      stateDir: '/home/ann/.local/state/monitor-mcp',
      configFile: '/home/ann/.config/monitor-mcp/config.json',
    });
    expect(LINUX.folders({ XDG_STATE_HOME: '/s', XDG_CONFIG_HOME: '/c' }, '/home/ann')).toMatchObject({
      stateDir: '/s/monitor-mcp',
      configFile: '/c/monitor-mcp/config.json',
    });
    expect(LINUX.workerSpawnOptions.detached).toBe(true);
    expect(LINUX.commandLine('/bin/x', ['a'])).toEqual({ file: '/bin/x', args: ['a'] });
  });

  it('runs another Unix as posix without /proc', () => {
    const bsd = platformFor('freebsd');
    expect(bsd.procDir).toBeUndefined();
    expect(bsd.pathRules.flavor).toBe('posix');
    expect(bsd.folders({}, '/home/ann').stateDir).toBe('/home/ann/.local/state/monitor-mcp');
  });
});
