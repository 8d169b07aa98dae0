import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { processControl } from '../src/processes.js';
import { alive, eventually, killQuietly } from './helpers/scripts.js';

const kill = (pid: number, signal: NodeJS.Signals | 0): void => {
  process.kill(pid, signal);
};

describe('processControl', () => {
  it('tells live processes from exited ones', async () => {
    const control = processControl(process.pid, kill);
    expect(control.pid).toBe(process.pid);
    expect(control.isAlive(process.pid)).toBe(true);
    const child = spawn('true', [], { stdio: 'ignore' });
    await new Promise((resolve) => child.on('exit', resolve));
    expect(control.isAlive(child.pid ?? 0)).toBe(false);
  });

  it('does not take a process started at another time for the owner (a pid reused after a reboot)', () => {
    const control = processControl(process.pid, kill);
    expect(control.startToken).toMatch(/^\d+$/);
    expect(control.isAlive(process.pid, control.startToken)).toBe(true);
    expect(control.isAlive(process.pid, '1')).toBe(false);
  });

  it('signals a whole process group and says whether anyone got it', { timeout: 20_000 }, async () => {
    const control = processControl(process.pid, kill);
    const leader = spawn('bash', ['-c', 'sleep 60 & echo $!; wait'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const member = Number(
      await new Promise<string>((resolve) => leader.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString()))),
    );
    const pgid = leader.pid ?? 0;
    const exited = new Promise((resolve) => leader.on('exit', resolve));
    try {
      expect(control.signalTree(pgid, 0)).toBe(true);
      expect(control.signalTree(pgid, 'SIGTERM')).toBe(true);
      await exited;
      expect(await eventually(() => !alive(member), 5000)).toBe(true);
      // The orphaned member stays a zombie in the group until PID 1 reaps it.
      expect(await eventually(() => !control.signalTree(pgid, 0), 10_000)).toBe(true);
    } finally {
      killQuietly(member);
      killQuietly(pgid);
    }
  });

  it('never sends to group 0 (its own) or 1 (every process)', () => {
    const sent: number[] = [];
    const control = processControl(process.pid, (pid) => {
      sent.push(pid);
    });
    expect(control.signalTree(0, 'SIGKILL')).toBe(false);
    expect(control.signalTree(1, 'SIGKILL')).toBe(false);
    expect(control.signalTree(-5, 'SIGKILL')).toBe(false);
    expect(control.signalTree(1234, 0)).toBe(true);
    expect(sent).toEqual([-1234]);
  });
});
