import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SpawnRequest } from '../../../src/pools/script/spawner.js';
import { testProcesses } from '../../helpers/client.js';
import { alive, until } from '../../helpers/scripts.js';
import { finish, sh as shIn, useSpawnerFixture } from './spawning.js';

/** The relay spawner's own ways: one helper process, its death, its idle exit, its fallback. */

const fixture = useSpawnerFixture();
const sh = (script: string, args?: string[], more?: Partial<SpawnRequest>): SpawnRequest =>
  shIn(fixture.dir, script, args, more);
const relay = fixture.relay;

describe('RelaySpawner', () => {
  it('starts tasks through one helper process, not from the server', async () => {
    const spawner = relay();
    const child = await spawner.start(sh('echo $PPID'));
    const { stdout } = await finish(child);
    expect(spawner.mode).toBe('relay');
    expect(spawner.helperPid).toBeDefined();
    expect(Number(stdout.trim())).toBe(spawner.helperPid);
    expect(Number(stdout.trim())).not.toBe(process.pid);
    // It became a child subreaper: it adopts the tasks' orphans, and is the one to sweep them.
    expect(spawner.adopter?.pid).toBe(spawner.helperPid);
  });

  it('when the helper dies, ends its tasks (groups killed) and starts a new helper for the next task', async () => {
    const spawner = relay();
    const child = await spawner.start(sh('sleep 60 & echo $!; wait'));
    const grandchild = Number(
      (
        await new Promise<string>((resolve) => child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())))
      ).trim(),
    );
    child.stdout.resume();
    child.stderr.resume();
    const helper = spawner.helperPid ?? 0;
    process.kill(helper, 'SIGKILL');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await child.closed;
    await until(() => !alive(child.pid) && !alive(grandchild), "the dead helper's tasks to be ended", 5000);
    const next = await finish(await spawner.start(sh('echo again')));
    expect(next.stdout).toBe('again\n');
    expect(spawner.helperPid).not.toBe(helper);
  });

  it('survives streams destroyed while their worker is still writing (a pipe closed while it has data pending)', async () => {
    const spawner = relay();
    await finish(await spawner.start(sh('true')));
    const helper = spawner.helperPid;
    for (let round = 0; round < 20; round++) {
      const child = await spawner.start(sh('while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; echo e >&2; done'));
      await new Promise((resolve) => child.stdout.once('data', resolve));
      child.stdout.destroy();
      child.stderr.destroy();
      testProcesses.signalTree(child.pid, 'SIGKILL');
      await child.closed;
    }
    expect((await finish(await spawner.start(sh('echo still')))).stdout).toBe('still\n');
    expect(spawner.helperPid).toBe(helper);
  });

  it('at close, kills the process groups still running and the helper exits', async () => {
    const spawner = relay();
    const child = await spawner.start(sh('sleep 60'));
    child.stdout.resume();
    child.stderr.resume();
    const helper = spawner.helperPid ?? 0;
    await spawner.close();
    expect(await child.exited).toMatchObject({ code: null });
    await until(() => !alive(child.pid) && !alive(helper), 'the task and the helper to end', 5000);
    await expect(spawner.start(sh('true'))).rejects.toThrow(/closed/);
  });

  it('exits when idle and starts again on demand', async () => {
    const spawner = relay({ idleMs: 50 });
    await finish(await spawner.start(sh('true')));
    const helper = spawner.helperPid ?? 0;
    expect(helper).toBeGreaterThan(0);
    await until(() => spawner.helperPid === undefined && !alive(helper), 'the idle helper to exit', 5000);
    expect((await finish(await spawner.start(sh('echo back')))).stdout).toBe('back\n');
  });

  it('falls back to starting processes directly when the helper cannot run (no Python, or its file missing)', async () => {
    const spawner = relay({ python: () => Promise.resolve(path.join(fixture.dir, 'no-python-here')) });
    const result = await finish(await spawner.start(sh('echo $PPID')));
    expect(spawner.mode).toBe('direct');
    expect(Number(result.stdout.trim())).toBe(process.pid);
    const none = relay({ python: () => Promise.reject(new Error('python3 not found')) });
    expect((await finish(await none.start(sh('echo ok')))).stdout).toBe('ok\n');
    expect(none.mode).toBe('direct');
    const noHelper = relay({ helperFile: path.join(fixture.dir, 'no-spawn_helper.py') });
    expect((await finish(await noHelper.start(sh('echo $PPID')))).stdout.trim()).toBe(String(process.pid));
    expect(noHelper.mode).toBe('direct');
  });
});
