import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { LINUX } from '../../../src/platform/index.js';
import type { LentServices } from '../../../src/pools/kind.js';
import { InterpreterResolver } from '../../../src/pools/script/interpreters.js';
import { OutlineLender } from '../../../src/pools/script/lend.js';
import { ScriptPool } from '../../../src/pools/script/pool.js';
import { Slots } from '../../../src/pools/script/slots.js';
import { buildKinds, type BuiltKind, type Config } from '../../../src/registry.js';
import { makeTempDir, testProcesses } from '../../helpers/client.js';
import { alive, killQuietly, scriptConfig, until } from '../../helpers/scripts.js';

/** The outline worker lent to other kinds: the bundled outline.py, warm, through the script pool. */

/** Warm outline.py processes this test process started (read from /proc: parent, command line). */
function outlineProcesses(): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0');
      if (ppid === process.pid && cmdline.some((arg) => arg.endsWith('/workers/outline.py')) && alive(Number(name)))
        found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** The code of what `promise` rejects with. */
async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => 'resolved',
    (error: unknown) => (error as { code?: unknown }).code,
  );
}

const never = new AbortController().signal;

describe('the lent outline service', () => {
  let root = '';
  let outside = '';
  let config: Config;
  let script: BuiltKind;
  let outline: NonNullable<LentServices['outline']>;
  const seen = new Set<number>();

  beforeAll(async () => {
    root = await makeTempDir('monitor-lend-');
    outside = await makeTempDir('monitor-lend-outside-');
    await mkdir(path.join(root, 'src'));
    await writeFile(path.join(root, 'a.py'), 'def greet(name):\n    """Says hello."""\n    return name\n');
    await writeFile(
      path.join(root, 'src', 'b.ts'),
      'export function add(a: number, b: number): number {\n  return a + b;\n}\n',
    );
    await writeFile(path.join(outside, 'secret.py'), 'def hidden():\n    pass\n');
    await symlink(path.join(outside, 'secret.py'), path.join(root, 'link.py'));
    config = await scriptConfig((c) => {
      c.allowedRoots = [root];
    });
    const kinds = await buildKinds(config, {
      log: silentLogger,
      env: process.env,
      processes: testProcesses,
      platform: LINUX,
    });
    const found = kinds.find((k) => k.name === 'script');
    if (!found?.instance.lends?.outline) throw new Error('the script kind lends no outline');
    script = found;
    outline = found.instance.lends.outline.bind(found.instance.lends);
  });

  afterAll(async () => {
    await script.instance.close();
    for (const pid of seen) killQuietly(pid);
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
    await rm(config.stateDir, { recursive: true, force: true });
  });

  it('outlines real files, each entry named as asked, on one warm process kept between calls', async () => {
    const first = (await outline(['a.py', path.join(root, 'src', 'b.ts')], never)) as {
      files: Array<{ file: string; symbols: Array<{ name: string; kind: string }> }>;
    };
    expect(first.files.map((f) => f.file)).toEqual(['a.py', path.join(root, 'src', 'b.ts')]);
    expect(first.files[0]?.symbols).toContainEqual(expect.objectContaining({ kind: 'function', name: 'greet' }));
    expect(first.files[1]?.symbols).toContainEqual(expect.objectContaining({ name: 'add' }));
    const pids = outlineProcesses();
    pids.forEach((pid) => seen.add(pid));
    expect(pids).toHaveLength(1);

    const second = (await outline(['src/b.ts'], never)) as { files: Array<{ file: string }> };
    expect(second.files.map((f) => f.file)).toEqual(['src/b.ts']);
    expect(outlineProcesses()).toEqual(pids);
  }, 30_000);

  it('refuses a path outside the allowed folders, through a symlink too, and an empty list', async () => {
    expect(await codeOf(outline([path.join(outside, 'secret.py')], never))).toBe('PATH_OUTSIDE_ROOT');
    expect(await codeOf(outline(['link.py'], never))).toBe('PATH_OUTSIDE_ROOT');
    expect(await codeOf(outline(['../' + path.basename(outside) + '/secret.py'], never))).toBe('PATH_OUTSIDE_ROOT');
    expect(await codeOf(outline([], never))).toBe('INVALID_INPUT');
  }, 30_000);

  it('a cancel ends the call and its process; the next call starts another', async () => {
    await outline(['a.py'], never);
    const [pid] = outlineProcesses();
    if (pid === undefined) throw new Error('no warm outline process');
    seen.add(pid);
    // Stopped, it cannot answer: the call stays in flight until the cancel.
    process.kill(pid, 'SIGSTOP');
    const controller = new AbortController();
    const call = codeOf(outline(['a.py'], controller.signal));
    const pool = script.instance.pool as ScriptPool;
    await until(() => pool.liveCards()[0]?.busy === 1, 'the call to hold a slot');
    controller.abort();
    expect(await call).toBe('CANCELLED');
    await until(() => !alive(pid), 'the stopped process to end');

    await outline(['a.py'], never);
    const after = outlineProcesses();
    after.forEach((p) => seen.add(p));
    expect(after).toHaveLength(1);
    expect(after).not.toContain(pid);
  }, 30_000);

  it('a call that outlasts its time fails with TIMEOUT and its process ends', async () => {
    const pool = script.instance.pool as ScriptPool;
    const lender = new OutlineLender({
      pool,
      allowedRoots: [root],
      resolver: new InterpreterResolver({
        searchPath: config.script.searchPath,
        nodePath: process.execPath,
        env: process.env,
        log: silentLogger,
      }),
      interpreters: config.script.interpreters,
      baseEnv: process.env,
      searchPath: config.script.searchPath,
      log: silentLogger,
      timeoutMs: 1500,
    });
    await lender.outline(['a.py'], never);
    const [pid] = outlineProcesses();
    if (pid === undefined) throw new Error('no warm outline process');
    seen.add(pid);
    process.kill(pid, 'SIGSTOP');
    expect(await codeOf(lender.outline(['a.py'], never))).toBe('TIMEOUT');
    await until(() => !alive(pid), 'the stopped process to end');
  }, 30_000);

  it('close ends the warm process, and later calls are refused', async () => {
    await outline(['a.py'], never);
    const pids = outlineProcesses();
    pids.forEach((pid) => seen.add(pid));
    expect(pids).toHaveLength(1);
    await script.instance.close();
    expect(pids.filter(alive)).toEqual([]);
    expect(await codeOf(outline(['a.py'], never))).toBe('SHUTTING_DOWN');
  }, 30_000);
});

describe("the script pool's slots", () => {
  it('a lent call waits while the runs fill the pool, then takes the slot freed', async () => {
    const slots = new Slots(1);
    let release: () => void = () => {};
    const held = slots.hold(() => new Promise<void>((resolve) => (release = resolve)));
    let ran = false;
    const borrowed = slots.borrow(never, Date.now() + 20_000, () => {
      ran = true;
      return Promise.resolve(slots.inUse);
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(ran).toBe(false);
    release();
    await held;
    expect(await borrowed).toBe(1);
    expect(slots.inUse).toBe(0);
  });

  it('a wait for a slot ends on cancel and on its deadline', async () => {
    const slots = new Slots(1);
    let release: () => void = () => {};
    const held = slots.hold(() => new Promise<void>((resolve) => (release = resolve)));
    const controller = new AbortController();
    const cancelled = codeOf(slots.borrow(controller.signal, Date.now() + 20_000, () => Promise.resolve()));
    controller.abort();
    expect(await cancelled).toBe('CANCELLED');
    expect(await codeOf(slots.borrow(never, Date.now() + 50, () => Promise.resolve()))).toBe('TIMEOUT');
    release();
    await held;
    expect(slots.inUse).toBe(0);
  });
});
