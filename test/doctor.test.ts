import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDoctor } from '../src/doctor.js';
import { LmStudioDouble } from './fixtures/lmstudio-double.js';
import { makeTempDir, testConfig } from './helpers/client.js';
import { freePort } from './helpers/net.js';
import { cleanupsAfterEach } from './helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

// The doctor probes the real python3 on PATH, as `monitor-mcp doctor` would.
const env = { PATH: process.env.PATH, HOME: process.env.HOME, PYENV_ROOT: process.env.PYENV_ROOT };

describe('runDoctor', () => {
  it('passes when every endpoint, python3 and folder is fine, listing the models', async () => {
    const double = await LmStudioDouble.start({ models: [{ id: 'qwen3-8b', state: 'loaded', contextLength: 8192 }] });
    cleanups.push(() => double.close());
    const config = await testConfig((c) => {
      c.llm.endpoints = [{ name: 'lmstudio', url: double.url, concurrency: 4, models: [], flavor: 'lmstudio' }];
    });
    const lines: string[] = [];
    const code = await runDoctor(config, { write: (line) => lines.push(line), env });
    const out = lines.join('');
    expect(out).toMatch(
      /\[ok\]\s+lmstudio \(lmstudio, http:\/\/127\.0\.0\.1:\d+, 4 slot\(s\), 4 at once\): reachable, 1 model\(s\), 1 LLM\(s\) loaded/,
    );
    expect(out).toContain('- qwen3-8b (llm, loaded, context 8192)');
    expect(out).toMatch(/\[ok\]\s+Python 3\.\d+/);
    if (process.platform === 'linux') expect(out).toMatch(/\[ok\]\s+spawn helper: cold tasks start through it/);
    expect(out).toMatch(/\[ok\]\s+bundled workers folder/);
    expect(out).toMatch(/\[ok\]\s+state directory .* is writable/);
    expect(out).toContain('All checks passed');
    expect(code).toBe(0);
  });

  it('fails with what to fix: endpoint down, missing default model, bad python, missing folders', async () => {
    const deadUrl = `http://127.0.0.1:${await freePort()}`;
    const config = await testConfig((c) => {
      c.llm.endpoints = [{ name: 'lmstudio', url: deadUrl, concurrency: 4, models: [], flavor: 'lmstudio' }];
      c.llm.defaultModel = 'llama-70b';
      c.script.interpreters['.py'] = 'python3-that-does-not-exist';
      c.workersDirs = [...c.workersDirs, path.join(c.stateDir, 'no-such-workers')];
    });
    const lines: string[] = [];
    const code = await runDoctor(config, { write: (line) => lines.push(line), env });
    const out = lines.join('');
    expect(code).toBe(1);
    expect(out).toMatch(/\[FAIL\] lmstudio .*not reachable/);
    expect(out).toMatch(/fix: Start LM Studio's server/);
    expect(out).toMatch(/\[FAIL\] default model llama-70b is not listed/);
    expect(out).toMatch(/\[FAIL\] python3-that-does-not-exist not found/);
    expect(out).toMatch(/\[FAIL\] workers folder .*no-such-workers is not readable/);
    expect(out).toMatch(/check\(s\) failed/);
  });

  it('tells a refusing endpoint from a dead one, and fails on a missing allowed folder and an unwritable state directory', async () => {
    const guarded = await LmStudioDouble.start({ token: 'sk-lm-abc:def' });
    cleanups.push(() => guarded.close());
    const blocker = path.join(await makeTempDir('doctor-'), 'a-file');
    await writeFile(blocker, 'not a folder');
    cleanups.push(() => rm(path.dirname(blocker), { recursive: true, force: true }));
    const config = await testConfig((c) => {
      c.llm.endpoints = [
        {
          name: 'guarded',
          url: guarded.url,
          concurrency: 4,
          models: [],
          flavor: 'lmstudio',
          apiKeyEnv: 'LM_API_TOKEN',
        },
      ];
      c.allowedRoots = [...c.allowedRoots, path.join(path.dirname(blocker), 'no-such-root')];
      // A state directory under a regular file cannot be created, whoever runs the test (root too).
      const made = c.stateDir;
      cleanups.push(() => rm(made, { recursive: true, force: true }));
      c.stateDir = path.join(blocker, 'state');
    });
    const lines: string[] = [];
    const code = await runDoctor(config, { write: (line) => lines.push(line), env });
    const out = lines.join('');
    expect(code).toBe(1);
    expect(out).toMatch(/\[FAIL\] guarded .*: reachable, refused \(AUTH_REQUIRED\)/);
    expect(out).toMatch(/fix: Set LM_API_TOKEN/);
    expect(out).not.toMatch(/not reachable/);
    expect(out).toMatch(/\[FAIL\] allowed folder .*no-such-root does not exist/);
    expect(out).toMatch(/\[FAIL\] state directory .*a-file\/state is not writable/);
  });
  it('lists the workers folders: the user one missing is fine, then its workers, and a name one hides from another', async () => {
    const configHome = await makeTempDir('doctor-config-home-');
    cleanups.push(() => rm(configHome, { recursive: true, force: true }));
    const config = await testConfig(() => {}, [], { XDG_CONFIG_HOME: configHome });
    cleanups.push(() => rm(config.stateDir, { recursive: true, force: true }));
    const userWorkers = path.join(configHome, 'monitor-mcp', 'workers');
    const doctor = async (): Promise<string> => {
      const lines: string[] = [];
      await runDoctor(config, { write: (line) => lines.push(line), env });
      return lines.join('');
    };
    const before = await doctor();
    expect(before).toMatch(/\[ok\]\s+bundled workers folder \S+ \(5 worker\(s\)\)/);
    expect(before).toContain(
      `[ok]   user workers folder ${userWorkers} (not created yet: \`monitor-mcp new-worker NAME\` writes a first worker there)`,
    );
    expect(before).not.toMatch(/\[FAIL\].*workers folder/);

    await mkdir(userWorkers, { recursive: true });
    await writeFile(path.join(userWorkers, 'tally.py'), 'print(1)\n');
    await writeFile(path.join(userWorkers, 'code_stats.py'), 'print(2)\n');
    await writeFile(path.join(userWorkers, '_helper.py'), '');
    const after = await doctor();
    expect(after).toContain(`[ok]   user workers folder ${userWorkers} (2 worker(s))`);
    expect(after).toMatch(/\[warn\] code_stats\.py in \S+ hides the same-named worker in .*code_stats\.py/);
  });
});
