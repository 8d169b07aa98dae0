import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { LINUX } from '../../src/platform/index.js';
import type { AnswerCheckReply, LentServices } from '../../src/pools/kind.js';
import { buildKinds, type BuiltKind, type Config } from '../../src/registry.js';
import { connectInMemory, makeTempDir, testProcesses } from '../helpers/client.js';
import { bundledWorkers, collectAll, scriptConfig, submitScripts } from '../helpers/scripts.js';
import { pythonExecutable, runCold } from '../helpers/warm-harness.js';

/** The bundled check_patch.py: an answer's unified diff checked with `git apply --check` in a real repository. */

const git = promisify(execFile);
const SOURCE = 'def greet(name):\n    return "hello " + name\n\n\ndef part(a, b):\n    return a + b\n';

const GOOD = `--- a/app.py
+++ b/app.py
@@ -1,4 +1,4 @@
 def greet(name):
-    return "hello " + name
+    return f"hello {name}"
 
 
`;
/** Its context says "hi", which app.py does not: git refuses it. */
const STALE = GOOD.replace('-    return "hello " + name', '-    return "hi " + name');
const NEW_FILE = `diff --git a/notes.txt b/notes.txt
new file mode 100644
--- /dev/null
+++ b/notes.txt
@@ -0,0 +1 @@
+a note
`;

describe('check_patch.py', () => {
  let repo = '';
  let config: Config;
  let script: BuiltKind;
  let checkAnswer: NonNullable<LentServices['checkAnswer']>;

  const check = (text: string, options: { json?: unknown; args?: string[] } = {}): Promise<AnswerCheckReply> =>
    checkAnswer(
      {
        worker: 'check_patch.py',
        answer: options.json === undefined ? { text } : { text, json: options.json },
        timeoutMs: 20_000,
        ...(options.args ? { args: options.args } : {}),
      },
      new AbortController().signal,
    );

  beforeAll(async () => {
    repo = realpathSync(await makeTempDir('monitor-check-patch-'));
    await writeFile(path.join(repo, 'app.py'), SOURCE);
    await git('git', ['init', '-q'], { cwd: repo });
    await git('git', ['add', 'app.py'], { cwd: repo });
    await git('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-qm', 'start'], { cwd: repo });
    config = await scriptConfig((c) => {
      c.allowedRoots = [repo];
    });
    const kinds = await buildKinds(config, {
      log: silentLogger,
      env: process.env,
      processes: testProcesses,
      platform: LINUX,
    });
    const found = kinds.find((k) => k.name === 'script');
    if (!found?.instance.lends?.checkAnswer) throw new Error('the script kind lends no checkAnswer');
    script = found;
    checkAnswer = found.instance.lends.checkAnswer.bind(found.instance.lends);
  });

  afterAll(async () => {
    await script.instance.close();
    await rm(repo, { recursive: true, force: true });
    await rm(config.stateDir, { recursive: true, force: true });
  });

  it('accepts a diff that applies: fenced among prose, bare, a new file, or a JSON answer\'s "patch"', async () => {
    const fenced = await check(`Here is the change:\n\n\`\`\`diff\n${GOOD}\`\`\`\n\nIt uses an f-string.`);
    expect(fenced).toMatchObject({ accepted: true, exitCode: 0 });
    expect(await check(GOOD)).toMatchObject({ accepted: true });
    expect(await check(`\`\`\`\n${NEW_FILE}\`\`\``)).toMatchObject({ accepted: true });
    const json = { patch: GOOD, summary: 'f-string' };
    expect(await check(JSON.stringify(json), { json })).toMatchObject({ accepted: true });
    const withArgs = await check(GOOD, { args: ['-p', '1', '--recount'] });
    expect(withArgs, withArgs.reason).toMatchObject({ accepted: true });
  }, 60_000);

  it("rejects a diff that does not apply with git's reason, and leaves the repository as it was", async () => {
    const stale = await check(`\`\`\`patch\n${STALE}\`\`\``);
    expect(stale).toMatchObject({ accepted: false, exitCode: 1 });
    expect(stale.reason).toMatch(/^the answer's patch does not apply:\n/);
    expect(stale.reason).toContain('error: patch failed: app.py:1');
    const outside = await check(GOOD.replaceAll('app.py', '../outside.py'));
    expect(outside).toMatchObject({ accepted: false, exitCode: 1 });
    expect(outside.reason).toMatch(/does not apply:\n.*(outside|invalid path|beyond)/s);
    // --check only reads: nothing changed, nothing added, the index untouched.
    expect(await readFile(path.join(repo, 'app.py'), 'utf8')).toBe(SOURCE);
    expect((await git('git', ['status', '--porcelain'], { cwd: repo })).stdout).toBe('');
  }, 60_000);

  it('rejects an answer with no unified diff, and refuses unknown arguments (exit 2)', async () => {
    for (const text of ['The function looks fine to me.', '```python\nprint(1)\n```', '--- a/app.py only'])
      expect(await check(text), text).toEqual(
        expect.objectContaining({ accepted: false, exitCode: 1, reason: 'the answer contains no unified diff' }),
      );
    expect(await check('{}', { json: { summary: 'no patch here' } })).toMatchObject({
      reason: 'the answer contains no unified diff',
    });
    const refused = await check(GOOD, { args: ['--apply'] });
    expect(refused).toMatchObject({ accepted: false, exitCode: 2 });
    expect(refused.reason).toMatch(/unknown argument '--apply'/);
  }, 60_000);

  it('without git on PATH exits 2 saying so', async () => {
    const run = await runCold(await pythonExecutable(), ['-s', '-E', path.join(bundledWorkers, 'check_patch.py')], {
      cwd: repo,
      env: { PATH: path.join(repo, 'no-such-bin'), MONITOR_STDIN_FORMAT: 'text' },
      stdin: GOOD,
    });
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^check_patch: git was not found on PATH/);
  }, 30_000);

  it('runs as any worker under run_script_batch: the answer on stdin, the reason in the failed task', async () => {
    const conn = await connectInMemory(config, { env: { PATH: process.env.PATH } });
    try {
      const jobId = await submitScripts(conn, {
        worker: 'check_patch.py',
        cwd: repo,
        inputs: [{ stdin: GOOD }, { stdin: STALE }],
      });
      const { results } = await collectAll(conn, jobId);
      expect(results[0]).toMatchObject({ state: 'succeeded', value: { text: 'the patch applies (1 file)' } });
      expect(results[1]).toMatchObject({ state: 'failed', error: { code: 'NON_ZERO_EXIT' }, value: { exit_code: 1 } });
      expect(String(results[1]?.value?.text)).toContain('error: patch failed: app.py:1');
    } finally {
      await conn.close();
    }
  }, 60_000);
});
