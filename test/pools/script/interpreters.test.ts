import { execFile } from 'node:child_process';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { platformFor } from '../../../src/platform/index.js';
import { findExecutable, InterpreterResolver } from '../../../src/pools/script/interpreters.js';
import { makeTempDir } from '../../helpers/client.js';

const run = promisify(execFile);
const searchPath = process.env.PATH ?? '/usr/bin:/bin';

describe('findExecutable', () => {
  it('finds a name on the search path, and an absolute path only when it is an executable file', async () => {
    expect(await findExecutable('bash', searchPath)).toMatch(/\/bash$/);
    expect(await findExecutable('no-such-program-xyz', searchPath)).toBeUndefined();
    expect(await findExecutable('/bin/sh', '')).toBe('/bin/sh');
    const dir = await makeTempDir('monitor-exec-');
    const plain = path.join(dir, 'plain');
    await writeFile(plain, '#!/bin/sh\n', { mode: 0o644 });
    expect(await findExecutable(plain, '')).toBeUndefined();
    expect(await findExecutable('plain', dir)).toBeUndefined();
    await chmod(plain, 0o755);
    expect(await findExecutable('plain', dir)).toBe(plain);
    await rm(dir, { recursive: true, force: true });
    expect(await findExecutable('/etc', '')).toBeUndefined();
    // A relative path with a slash is never looked up (it would depend on the server's cwd).
    expect(await findExecutable('./bash', '/bin')).toBeUndefined();
  });
});

describe('InterpreterResolver', () => {
  const resolver = (nodePath = process.execPath): InterpreterResolver =>
    new InterpreterResolver({
      searchPath,
      nodePath,
      env: { PATH: searchPath, HOME: process.env.HOME },
      log: silentLogger,
    });

  it('resolves python3 once to the interpreter behind any shim (sys.executable)', async () => {
    const { stdout } = await run('python3', ['-c', 'import sys; print(sys.executable)']);
    const r = resolver();
    const first = r.resolve('python3');
    expect(r.resolve('python3')).toBe(first);
    expect(await first).toBe(stdout.trim());
  });

  it('locates python3 on the path without starting it (a dispatch waits for no process); resolve then asks it', async () => {
    // A shim that says where it was run: locate() must leave no trace, resolve() one.
    const dir = await makeTempDir('monitor-shim-');
    const trace = path.join(dir, 'ran');
    const shim = path.join(dir, 'python3');
    await writeFile(shim, `#!/bin/sh\necho ran >> '${trace}'\nexec python3 "$@"\n`, { mode: 0o755 });
    const r = new InterpreterResolver({
      searchPath: `${dir}:${searchPath}`,
      nodePath: process.execPath,
      env: { PATH: searchPath, HOME: process.env.HOME },
      log: silentLogger,
    });
    try {
      expect(await r.locate('python3')).toBe(shim);
      await expect(readFile(trace, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
      const { stdout } = await run('python3', ['-c', 'import sys; print(sys.executable)']);
      expect(await r.resolve('python3')).toBe(stdout.trim());
      expect(await readFile(trace, 'utf8')).toBe('ran\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('uses the configured node binary for "node"', async () => {
    expect(await resolver().resolve('node')).toBe(process.execPath);
  });

  it('fails with SPAWN_FAILED and a config hint when the interpreter is missing, and retries later', async () => {
    const r = resolver();
    await expect(r.resolve('ruby-does-not-exist')).rejects.toMatchObject({
      code: 'SPAWN_FAILED',
      hint: expect.stringContaining('"interpreters"'),
    });
    // Not cached: a second call looks again instead of replaying the failure.
    await expect(r.resolve('ruby-does-not-exist')).rejects.toMatchObject({ code: 'SPAWN_FAILED' });
  });
});

describe('findExecutable by Windows rules (its file checks faked)', () => {
  const win = platformFor('win32', { PATHEXT: '.COM;.EXE;.BAT;.CMD', SystemRoot: 'C:\\Windows' });
  const files = new Set([
    'C:\\Python312\\python.exe',
    'C:\\Users\\ann\\AppData\\Local\\Microsoft\\WindowsApps\\python3.exe',
    'C:\\tools\\lint.cmd',
    'C:\\Windows\\py.exe',
  ]);
  const lookup = { platform: win, isExecutable: (file: string) => Promise.resolve(files.has(file)) };
  const searchPathWin =
    'C:\\Users\\ann\\AppData\\Local\\Microsoft\\WindowsApps;relative\\dir;C:\\Python312;C:\\tools;C:\\Windows';

  it('tries each PATHEXT extension in each PATH folder, skips relative folders and Store stubs', async () => {
    expect(await findExecutable('python3', searchPathWin, lookup)).toBeUndefined();
    expect(await findExecutable('python', searchPathWin, lookup)).toBe('C:\\Python312\\python.exe');
    expect(await findExecutable('lint', searchPathWin, lookup)).toBe('C:\\tools\\lint.cmd');
    expect(await findExecutable('C:\\Python312\\python', '', lookup)).toBe('C:\\Python312\\python.exe');
  });

  it('resolves python3 to the py launcher first, as Windows installs it', async () => {
    const found: string[] = [];
    for (const candidate of win.interpreterCandidates('python3')) {
      const file = await findExecutable(candidate, searchPathWin, lookup);
      if (file !== undefined) found.push(file);
    }
    expect(found).toEqual(['C:\\Windows\\py.exe', 'C:\\Python312\\python.exe']);
  });
});
