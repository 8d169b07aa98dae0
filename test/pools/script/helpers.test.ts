import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addHelperEnv, missingHelperHint, SERVE_VAR } from '../../../src/pools/script/helpers.js';
import { connectInMemory, makeTempDir, repoRoot, testConfig, type Connected } from '../../helpers/client.js';
import { bundledWorkers, collectAll, type CollectedResult, submitScripts } from '../../helpers/scripts.js';

describe('addHelperEnv', () => {
  const helpers = { dir: '/pkg/workers', delimiter: ':', isolatedEnv: false };

  it("puts the helpers' folder first on PYTHONPATH, keeps the user's, and names _serve.mjs's URL", () => {
    const env: Record<string, string> = { PYTHONPATH: '/mine', PYTHONUTF8: '1' };
    addHelperEnv(env, helpers);
    expect(env).toEqual({
      PYTHONPATH: '/pkg/workers:/mine',
      PYTHONUTF8: '1',
      [SERVE_VAR]: 'file:///pkg/workers/_serve.mjs',
    });
    const bare: Record<string, string> = {};
    addHelperEnv(bare, helpers);
    expect(bare.PYTHONPATH).toBe('/pkg/workers');
    // Windows spells it as it likes: still one variable.
    const windows: Record<string, string> = { PythonPath: 'C:\\mine' };
    addHelperEnv(windows, { dir: 'C:\\pkg\\workers', delimiter: ';', isolatedEnv: false });
    expect(Object.keys(windows).filter((k) => k.toUpperCase() === 'PYTHONPATH')).toEqual(['PYTHONPATH']);
    expect(windows.PYTHONPATH).toBe('C:\\pkg\\workers;C:\\mine');
  });

  it('clears every PYTHON* variable for an isolated worker, as -E would, but the helpers', () => {
    const env: Record<string, string> = { PYTHONPATH: '/mine', PYTHONSTARTUP: '/x.py', pythonhome: '/h', PATH: '/bin' };
    addHelperEnv(env, { ...helpers, isolatedEnv: true });
    expect(env).toEqual({ PATH: '/bin', PYTHONPATH: '/pkg/workers', [SERVE_VAR]: 'file:///pkg/workers/_serve.mjs' });
  });

  it('leaves a command alone', () => {
    const env: Record<string, string> = { PYTHONPATH: '/mine' };
    addHelperEnv(env, undefined);
    expect(env).toEqual({ PYTHONPATH: '/mine' });
  });
});

describe('missingHelperHint', () => {
  it('says what to do when _common or _serve.mjs could not be imported, and nothing otherwise', () => {
    const helpers = { dir: '/pkg/workers', delimiter: ':', isolatedEnv: false };
    const python =
      'Traceback (most recent call last):\n  File "w.py", line 2\nModuleNotFoundError: No module named \'_common\'\n';
    expect(missingHelperHint(python, helpers)).toMatch(/_common.*\/pkg\/workers\/_common\.py.*PYTHONPATH.*-E or -I/);
    const node =
      "node:internal/modules/esm/resolve:1\nError [ERR_MODULE_NOT_FOUND]: Cannot find module '/home/u/w/_serve.mjs' imported from /home/u/w/x.mjs\n";
    expect(missingHelperHint(node, helpers)).toContain('await import(process.env.MONITOR_SERVE)');
    expect(missingHelperHint("ModuleNotFoundError: No module named 'numpy'", helpers)).toBeUndefined();
    expect(missingHelperHint("Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'left-pad'", helpers)).toBeUndefined();
    expect(missingHelperHint(undefined, helpers)).toBeUndefined();
  });
});

/** A worker that imports a bundled helper from a folder of its own, run by a real server. */
describe('a worker outside the bundled folder', () => {
  let userDir: string;
  let trap: string;
  let conn: Connected;

  beforeAll(async () => {
    const configHome = await makeTempDir('monitor-config-home-');
    trap = await makeTempDir('monitor-pythonpath-trap-');
    const config = await testConfig(
      (c) => {
        c.script.searchPath = process.env.PATH ?? '/usr/bin:/bin';
        c.script.nodePath = process.execPath;
        c.script.killGraceSeconds = 0.5;
      },
      [],
      { XDG_CONFIG_HOME: configHome },
    );
    userDir = config.userWorkersDir;
    expect(userDir).toBe(path.join(configHome, 'monitor-mcp', 'workers'));
    await mkdir(userDir, { recursive: true });
    // `served`: tasks this process has served, 2 for the second task only when one process serves both (warm).
    const report = `import os, sys\nimport _common\n\nSERVED = []\n\ndef handle(task):\n    SERVED.append(1)\n    return {"args": task.args, "pythonpath": os.environ.get("PYTHONPATH"), "e": sys.flags.ignore_environment, "common": _common.__file__, "served": len(SERVED)}\n\n_common.serve(handle)\n`;
    await writeFile(path.join(userDir, 'plain.py'), `# monitor: warm: yes\n${report}`);
    await writeFile(path.join(userDir, 'isolated.py'), `# monitor: warm: yes\n# monitor: isolated: yes\n${report}`);
    await writeFile(
      path.join(userDir, 'served.mjs'),
      `// monitor: warm: yes\nconst { serve } = await import(process.env.MONITOR_SERVE);\nlet served = 0;\nawait serve((task) => ({ args: task.args, serve: process.env.MONITOR_SERVE, served: ++served }));\n`,
    );
    await writeFile(
      path.join(userDir, 'relative.mjs'),
      `// monitor: warm: yes\nimport { serve } from './_serve.mjs';\nawait serve((task) => task.args);\n`,
    );
    // A #! line with -E: the interpreter ignores PYTHONPATH, so _common cannot be found.
    await writeFile(path.join(userDir, 'noenv'), '#!/usr/bin/env -S python3 -E\nimport _common\n');
    await chmod(path.join(userDir, 'noenv'), 0o755);
    conn = await connectInMemory(config, { env: { PATH: process.env.PATH, HOME: process.env.HOME, PYTHONPATH: trap } });
  });

  afterAll(async () => {
    await conn.close();
    await rm(path.dirname(path.dirname(userDir)), { recursive: true, force: true });
    await rm(trap, { recursive: true, force: true });
  });

  async function run(worker: string, warm: boolean): Promise<CollectedResult[]> {
    // One at a time: warm, one process serves both tasks.
    const jobId = await submitScripts(conn, {
      worker,
      inputs: [{ args: ['a'] }, { args: ['b'] }],
      warm,
      concurrency: 1,
      cwd: repoRoot,
    });
    return (await collectAll(conn, jobId)).results;
  }

  it.each([false, true])(
    'imports _common, keeping the server PYTHONPATH after it (warm: %s)',
    async (warm) => {
      const results = await run('plain.py', warm);
      expect(results.map((r) => r.state)).toEqual(['succeeded', 'succeeded']);
      expect(results[1]?.value?.json).toMatchObject({
        pythonpath: `${bundledWorkers}${path.delimiter}${trap}`,
        e: 0,
        common: path.join(bundledWorkers, '_common.py'),
        served: warm ? 2 : 1,
      });
      expect(results.map((r) => (r.value?.json as { args: string[] }).args)).toEqual([['a'], ['b']]);
    },
    60_000,
  );

  it.each([false, true])(
    'imports _common when isolated, with no other PYTHON* variable (warm: %s)',
    async (warm) => {
      const results = await run('isolated.py', warm);
      expect(results.map((r) => r.state)).toEqual(['succeeded', 'succeeded']);
      expect(results[1]?.value?.json).toMatchObject({ pythonpath: bundledWorkers, e: 0, served: warm ? 2 : 1 });
    },
    60_000,
  );

  it.each([false, true])(
    'imports _serve.mjs through MONITOR_SERVE (warm: %s)',
    async (warm) => {
      const results = await run('served.mjs', warm);
      expect(results.map((r) => r.state)).toEqual(['succeeded', 'succeeded']);
      expect(results[1]?.value?.json).toEqual({
        args: ['b'],
        serve: pathToFileURL(path.join(bundledWorkers, '_serve.mjs')).href,
        served: warm ? 2 : 1,
      });
    },
    60_000,
  );

  it('fails with a hint that says how to import _serve.mjs from elsewhere', async () => {
    for (const warm of [false, true]) {
      const results = await run('relative.mjs', warm);
      expect(results[0]?.state).toBe('failed');
      expect(results[0]?.error?.hint).toContain('await import(process.env.MONITOR_SERVE)');
    }
  }, 60_000);

  it('fails with a hint naming _common.py and PYTHONPATH when the interpreter ignores it', async () => {
    const results = await run('noenv', false);
    expect(results[0]?.state).toBe('failed');
    expect(results[0]?.error?.message).toContain("No module named '_common'");
    expect(results[0]?.error?.hint).toContain(path.join(bundledWorkers, '_common.py'));
    expect(results[0]?.error?.hint).toMatch(/PYTHONPATH.*-E or -I/);
  }, 60_000);
});
