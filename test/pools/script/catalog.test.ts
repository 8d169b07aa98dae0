import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { LINUX, type Platform, platformFor } from '../../../src/platform/index.js';
import { WorkerCatalog } from '../../../src/pools/script/catalog.js';
import { InterpreterResolver } from '../../../src/pools/script/interpreters.js';
import { makeTempDir } from '../../helpers/client.js';
import { bundledWorkers, fixtureWorkers } from '../../helpers/scripts.js';

const searchPath = process.env.PATH ?? '/usr/bin:/bin';
const interpreters = { '.py': 'python3', '.mjs': 'node', '.sh': 'bash' };
let extraDir: string;
let outside: string;

function catalog(dirs: string[], allowCommands: string[] = []): WorkerCatalog {
  const resolver = new InterpreterResolver({
    searchPath,
    nodePath: process.execPath,
    env: { PATH: searchPath },
    log: silentLogger,
  });
  return new WorkerCatalog({ workersDirs: dirs, allowCommands, interpreters, searchPath, resolver, log: silentLogger });
}

beforeAll(async () => {
  extraDir = await makeTempDir('monitor-workers-');
  outside = await makeTempDir('monitor-outside-');
  await writeFile(path.join(outside, 'evil.py'), 'print("outside")\n');
  await symlink(path.join(outside, 'evil.py'), path.join(extraDir, 'linked_out.py'));
  await symlink(path.join(fixtureWorkers, 'echo.py'), path.join(extraDir, 'linked_in.py'));
  await writeFile(path.join(extraDir, 'notes'), 'not runnable\n');
  await writeFile(path.join(extraDir, 'code_stats.py'), '# monitor: description: a user copy\n');
  await writeFile(path.join(extraDir, '_helper.py'), 'x = 1\n');
  await mkdir(path.join(extraDir, 'sub'));
  await writeFile(path.join(extraDir, 'sub', 'nested.py'), 'print(1)\n');
  await writeFile(path.join(extraDir, 'plain'), '#!/bin/sh\necho plain\n');
  await chmod(path.join(extraDir, 'plain'), 0o644);
});

afterAll(async () => {
  await rm(extraDir, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

describe('WorkerCatalog.list', () => {
  it('lists the bundled workers with their header, interpreter and input forms', async () => {
    const workers = await catalog([bundledWorkers]).list();
    const names = workers.map((w) => w.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'analyze_dependencies.py',
        'check_patch.py',
        'code_stats.py',
        'grep_context.py',
        'outline.py',
      ]),
    );
    expect(names).not.toContain('README.md');
    for (const worker of workers) {
      expect(worker.interpreter).toBe('python3');
      expect(worker.header.description?.length).toBeGreaterThan(20);
      expect(worker.header.input.args).toBeDefined();
      expect(worker.header.input.json).toBeDefined();
      // check_patch.py, an answer checker, says why it refuses an answer in plain text.
      expect(worker.header.output).toMatch(worker.name === 'check_patch.py' ? /^text/ : /^json/);
    }
  });

  it('lists fixture scripts of every kind; the first folder wins a name clash; links out, helpers and non-runnables are skipped', async () => {
    const workers = await catalog([bundledWorkers, fixtureWorkers, extraDir]).list();
    const byName = new Map(workers.map((w) => [w.name, w]));
    expect(byName.get('no_header.sh')).toMatchObject({ interpreter: 'bash', header: { input: {}, extra: {} } });
    expect(byName.get('no_header.sh')?.header.description).toBeUndefined();
    expect(byName.get('echo.mjs')?.interpreter).toBe('node');
    expect(byName.get('direct')?.interpreter).toBe('executable');
    expect(byName.get('linked_in.py')?.path).toBe(path.join(fixtureWorkers, 'echo.py'));
    expect(byName.get('code_stats.py')?.path).toBe(path.join(bundledWorkers, 'code_stats.py'));
    expect(byName.get('code_stats.py')?.shadows).toEqual([path.join(extraDir, 'code_stats.py')]);
    for (const skipped of ['linked_out.py', 'notes', '_helper.py', 'sub', 'nested.py', 'plain'])
      expect(byName.has(skipped)).toBe(false);
  });

  it('skips a folder that does not exist', async () => {
    const workers = await catalog([path.join(extraDir, 'missing'), fixtureWorkers]).list();
    expect(workers.map((w) => w.name)).toContain('echo.py');
  });

  it('surveys each folder: there or not, and its workers, hidden ones included', async () => {
    const missing = path.join(extraDir, 'missing');
    const { folders } = await catalog([bundledWorkers, missing, extraDir]).survey();
    // extraDir: code_stats.py (hidden by the bundled one); linked_in.py links into a folder not searched here, notes
    // is not runnable, sub is a folder.
    expect(folders).toEqual([
      { dir: bundledWorkers, exists: true, workers: 5 },
      { dir: missing, exists: false, workers: 0 },
      { dir: extraDir, exists: true, workers: 1 },
    ]);
  });
});

describe('WorkerCatalog.resolveWorker / planWorker', () => {
  const all = (): WorkerCatalog => catalog([bundledWorkers, fixtureWorkers, extraDir]);

  it('finds a worker in any folder and plans interpreter + script', async () => {
    const plan = await all().planWorker('echo.py');
    expect(plan.prefixArgs).toEqual([path.join(fixtureWorkers, 'echo.py')]);
    expect(plan.interpreter).toBe('python3');
    expect(path.isAbsolute(plan.file)).toBe(true);
    expect(await all().planWorker('direct')).toMatchObject({
      file: path.join(fixtureWorkers, 'direct'),
      prefixArgs: [],
      interpreter: 'executable',
    });
    expect(await all().planWorker('sub/nested.py')).toMatchObject({
      prefixArgs: [path.join(extraDir, 'sub', 'nested.py')],
    });
    expect(await all().planWorker(path.join(fixtureWorkers, 'echo.py'))).toMatchObject({
      prefixArgs: [path.join(fixtureWorkers, 'echo.py')],
    });
  });

  it('refuses traversal, absolute paths elsewhere and symlinks out with PATH_OUTSIDE_ROOT', async () => {
    for (const name of [
      '../../etc/passwd',
      '../fixtures/workers/echo.py',
      '/etc/passwd',
      '/etc/nonexistent.py',
      'linked_out.py',
    ]) {
      await expect(all().resolveWorker(name), name).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOT' });
    }
  });

  it('answers WORKER_NOT_FOUND with the available names for an unknown worker', async () => {
    const error = await all()
      .resolveWorker('nope.py')
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'WORKER_NOT_FOUND', hint: expect.stringContaining('analyze_dependencies.py') });
    expect(String((error as { hint: string }).hint)).toContain('echo.py');
    await expect(all().resolveWorker('sub')).rejects.toMatchObject({ code: 'WORKER_NOT_FOUND' });
  });

  it('lets every worker reach the bundled helpers; an isolated one outside their folder without -E, which would hide them', async () => {
    const isolated = path.join(extraDir, 'isolated.py');
    await writeFile(isolated, '# monitor: isolated: yes\nimport _common\n');
    const withHelpers = new WorkerCatalog({
      workersDirs: [bundledWorkers, fixtureWorkers, extraDir],
      allowCommands: ['true'],
      interpreters,
      searchPath,
      resolver: new InterpreterResolver({
        searchPath,
        nodePath: process.execPath,
        env: { PATH: searchPath },
        log: silentLogger,
      }),
      log: silentLogger,
      helpersDir: bundledWorkers,
    });
    const bundled = await withHelpers.planWorker('outline.py');
    expect(bundled.prefixArgs).toEqual(['-s', '-E', path.join(bundledWorkers, 'outline.py')]);
    expect(bundled.helpers).toBeUndefined();
    const outside = await withHelpers.planWorker('isolated.py');
    expect(outside.prefixArgs).toEqual(['-s', isolated]);
    expect(outside.helpers).toEqual({ dir: bundledWorkers, delimiter: ':', isolatedEnv: true });
    expect((await withHelpers.planWorker('echo.py')).helpers).toEqual({
      dir: bundledWorkers,
      delimiter: ':',
      isolatedEnv: false,
    });
    expect((await withHelpers.planCommand('true')).helpers).toBeUndefined();
    // Without a helpers folder (as before), nothing changes.
    expect((await all().planWorker('isolated.py')).prefixArgs).toEqual(['-s', '-E', isolated]);
    await rm(isolated);
  });

  it('refuses a file with no interpreter that is not executable', async () => {
    await expect(all().planWorker('plain')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      hint: expect.stringContaining('chmod +x'),
    });
  });
});

describe('WorkerCatalog.planCommand', () => {
  it('is off unless the user allowed commands', async () => {
    await expect(catalog([fixtureWorkers]).planCommand('ls')).rejects.toMatchObject({
      code: 'COMMAND_NOT_ALLOWED',
      hint: expect.stringContaining('--allow-command'),
    });
  });

  it('runs only commands on the allowlist, found on PATH or by absolute path', async () => {
    const c = catalog([fixtureWorkers], ['ls', '/bin/echo', 'missing-tool-xyz']);
    expect(await c.planCommand('ls')).toMatchObject({
      prefixArgs: [],
      interpreter: 'executable',
      file: expect.stringMatching(/\/ls$/),
    });
    expect(await c.planCommand('/bin/echo')).toMatchObject({ file: '/bin/echo' });
    await expect(c.planCommand('rm')).rejects.toMatchObject({
      code: 'COMMAND_NOT_ALLOWED',
      hint: expect.stringContaining('ls, /bin/echo'),
    });
    await expect(c.planCommand('/bin/ls')).rejects.toMatchObject({ code: 'COMMAND_NOT_ALLOWED' });
    await expect(c.planCommand('missing-tool-xyz')).rejects.toMatchObject({ code: 'SPAWN_FAILED' });
  });
});

describe('WorkerCatalog where the system does not run `#!` lines (Windows)', () => {
  // Linux's file system with Windows's rules for what runs: the catalog's own logic, tested here.
  const windowsLike: Platform = {
    ...LINUX,
    runsShebangs: false,
    isRunnable: (file) => /\.(com|exe|bat|cmd)$/i.test(file),
  };

  function windowsCatalog(dirs: string[], interpreterMap: Record<string, string> = interpreters): WorkerCatalog {
    // Interpreters are looked up on this (Linux) file system.
    const resolver = new InterpreterResolver({
      searchPath,
      nodePath: process.execPath,
      env: process.env,
      log: silentLogger,
      lookup: { platform: LINUX },
    });
    return new WorkerCatalog({
      workersDirs: dirs,
      allowCommands: [],
      interpreters: interpreterMap,
      searchPath,
      resolver,
      log: silentLogger,
      platform: windowsLike,
    });
  }

  it('runs an extensionless script through the program its #! line names, as cross-spawn does', async () => {
    const plan = await windowsCatalog([extraDir]).plan({ worker: 'plain' });
    expect(plan.interpreter).toBe('sh');
    expect(plan.file).toMatch(/\/sh$/);
    expect(plan.prefixArgs).toEqual([path.join(extraDir, 'plain')]);
    expect((await windowsCatalog([extraDir]).list()).find((w) => w.name === 'plain')?.interpreter).toBe('sh');
  });

  it('says how to get bash when a .sh worker cannot find one', async () => {
    const win = platformFor('win32', {});
    const noBash: Platform = {
      ...windowsLike,
      interpreterCandidates: () => ['no-such-bash-xyz'],
      missingInterpreterHint: win.missingInterpreterHint,
    };
    const resolver = new InterpreterResolver({
      searchPath,
      nodePath: process.execPath,
      env: process.env,
      log: silentLogger,
      lookup: { platform: noBash },
    });
    const withoutBash = new WorkerCatalog({
      workersDirs: [fixtureWorkers],
      allowCommands: [],
      interpreters,
      searchPath,
      resolver,
      log: silentLogger,
      platform: noBash,
    });
    await expect(withoutBash.plan({ worker: 'no_header.sh' })).rejects.toMatchObject({
      code: 'SPAWN_FAILED',
      hint: expect.stringMatching(/Git for Windows/),
    });
  });
});
