import { describe, expect, it } from 'vitest';
import { platformFor, type SystemCommands } from '../../src/platform/index.js';
import { processControl } from '../../src/processes.js';

describe('processControl on a system where asking for a start time runs a tool (Windows, faked)', () => {
  function setup(): {
    control: ReturnType<typeof processControl>;
    queries: () => number;
    alive: Set<number>;
    clock: { now: number };
  } {
    let queries = 0;
    const commands: SystemCommands = {
      runSync() {
        queries++;
        return '100\n';
      },
      startDetached: () => undefined,
    };
    const alive = new Set([4242]);
    const clock = { now: 1_000_000 };
    const kill = (pid: number): void => {
      if (!alive.has(pid)) throw Object.assign(new Error('ESRCH'), { code: 'ESRCH' });
    };
    const control = processControl(7, kill, {
      platform: platformFor('win32', {}, commands),
      startedAtMs: 99_500,
      now: () => clock.now,
    });
    return { control, queries: () => queries, alive, clock };
  }

  it('takes its own start token from when it started, without running anything', () => {
    const { control, queries } = setup();
    expect(control.startToken).toBe('t100');
    expect(queries()).toBe(0);
  });

  it('reuses a start time for a few seconds when telling whether a server lives, and asks afresh after', () => {
    const { control, queries, clock } = setup();
    expect(control.isAlive(4242, 't100')).toBe(true);
    expect(control.isAlive(4242, 't100')).toBe(true);
    expect(control.isAlive(4242, 't160')).toBe(false);
    expect(queries()).toBe(1);
    clock.now += 6000;
    expect(control.isAlive(4242, 't100')).toBe(true);
    expect(queries()).toBe(2);
  });

  it('never reuses an answer for a process that is gone, nor for what decides a signal', () => {
    const { control, queries, alive } = setup();
    expect(control.isAlive(4242, 't100')).toBe(true);
    alive.delete(4242);
    expect(control.isAlive(4242, 't100')).toBe(false);
    expect(queries()).toBe(1);
    alive.add(4242);
    control.stateOf(4242);
    control.stateOf(4242);
    expect(queries()).toBe(3);
  });
});
