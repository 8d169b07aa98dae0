import { existsSync, realpathSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { LINUX } from '../../../src/platform/index.js';
import type { AnswerCheckRequest, LentServices } from '../../../src/pools/kind.js';
import type { ScriptPool } from '../../../src/pools/script/pool.js';
import { buildKinds, type BuiltKind, type Config } from '../../../src/registry.js';
import { failure } from '../../helpers/cleanup.js';
import { makeTempDir, testProcesses } from '../../helpers/client.js';
import { alive, killQuietly, readPids, scriptConfig, until } from '../../helpers/scripts.js';

/** The answer checker the script kind lends the LLM kind: real workers, real processes, through the pool's slots. */

const WORKERS: Record<string, string> = {
  // Accepts an answer that says "good"; otherwise says why on stdout.
  'judge.py': `import sys
answer = sys.stdin.read()
if "good" in answer:
    sys.exit(0)
print("  the answer does not say good  ")
sys.exit(1)
`,
  // Rejects, telling what it was given: stdin, its format, args, cwd and output folder.
  'seen.py': `import json, os, sys
print(json.dumps({"stdin": sys.stdin.read(), "format": os.environ.get("MONITOR_STDIN_FORMAT"),
                  "args": sys.argv[1:], "cwd": os.getcwd(), "out": os.environ.get("MONITOR_OUTPUT_DIR")}))
sys.exit(1)
`,
  // Writes its pid to the file named by its first argument, then sleeps far past any timeout.
  'slow.py': `import os, sys, time
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
time.sleep(120)
`,
  'crash.py': `import sys
sys.stderr.write("reading the answer\\nboom: the summary names no function\\n")
sys.exit(3)
`,
  'silent.py': 'import sys\nsys.exit(4)\n',
  'segv.py': 'import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n',
  // Warm: speaks the protocol itself, and rejects every answer with its pid as the reason.
  'warm_pid.py': `# monitor: warm: yes
import json, os, sys
if os.environ.get("MONITOR_WARM") != "1":
    print(f"pid {os.getpid()} cold")
    sys.exit(1)
with open(3, "rb") as requests, open(4, "wb", buffering=0) as replies:
    for line in requests:
        request = json.loads(line)
        said = request.get("json", request.get("stdin"))
        reply = {"id": request["id"], "exit_code": 1, "output": f"pid {os.getpid()} got {json.dumps(said)}\\n"}
        replies.write(json.dumps(reply).encode() + b"\\n")
`,
};

const never = new AbortController().signal;

describe('the lent answer checker', () => {
  let root = '';
  let workers = '';
  let config: Config;
  let script: BuiltKind;
  let lends: LentServices;
  const pids = new Set<number>();
  /** The checkers' private output folder, as a check saw it. */
  let privateDir = '';

  const check = (request: Partial<AnswerCheckRequest> & { worker: string }, signal = never) => {
    if (!lends.checkAnswer) throw new Error('the script kind lends no checkAnswer');
    return lends.checkAnswer({ answer: { text: 'an answer' }, timeoutMs: 20_000, ...request }, signal);
  };

  beforeAll(async () => {
    root = realpathSync(await makeTempDir('monitor-check-root-'));
    workers = await makeTempDir('monitor-check-workers-');
    for (const [name, text] of Object.entries(WORKERS)) await writeFile(path.join(workers, name), text);
    config = await scriptConfig((c) => {
      c.allowedRoots = [root];
      c.workersDirs = [...c.workersDirs, workers];
      c.script.maxConcurrency = 2;
    });
    const kinds = await buildKinds(config, {
      log: silentLogger,
      env: process.env,
      processes: testProcesses,
      platform: LINUX,
    });
    const found = kinds.find((k) => k.name === 'script');
    if (!found?.instance.lends?.checkAnswer || !found.instance.lends.checkerExists)
      throw new Error('the script kind lends no answer checker');
    script = found;
    lends = found.instance.lends;
  });

  afterAll(async () => {
    await script.instance.close();
    for (const pid of pids) killQuietly(pid);
    await rm(root, { recursive: true, force: true });
    await rm(workers, { recursive: true, force: true });
    await rm(config.stateDir, { recursive: true, force: true });
  });

  it('accepts on exit 0 and rejects with the trimmed stdout as the reason', async () => {
    const good = await check({ worker: 'judge.py', answer: { text: 'a good answer' } });
    expect(good).toMatchObject({ accepted: true, exitCode: 0 });
    expect(good.reason).toBeUndefined();
    expect(good.durationMs).toBeGreaterThanOrEqual(0);
    const bad = await check({ worker: 'judge.py', answer: { text: 'a poor answer' } });
    expect(bad).toMatchObject({ accepted: false, reason: 'the answer does not say good', exitCode: 1 });
  }, 30_000);

  it('gives a text answer and a newline, a JSON answer as one line of JSON, args as given, in the first root', async () => {
    const before = await readdir(root);
    const text = await check({ worker: 'seen.py', args: ['--strict', 'a b'], answer: { text: 'line one\nline two' } });
    const seenText = JSON.parse(text.reason ?? '') as Record<string, unknown>;
    expect(seenText).toMatchObject({ stdin: 'line one\nline two\n', format: 'text', args: ['--strict', 'a b'] });
    expect(seenText.cwd).toBe(root);
    const json = { verdict: 'ok', citations: [{ path: 'a.ts', start_line: 3 }] };
    const asJson = await check({ worker: 'seen.py', answer: { text: JSON.stringify(json, null, 2), json } });
    const seenJson = JSON.parse(asJson.reason ?? '') as { stdin: string; format: string; out: string };
    expect(seenJson.format).toBe('json');
    expect(seenJson.stdin).toBe(`${JSON.stringify(json)}\n`);
    expect(seenJson.stdin.split('\n')).toHaveLength(2);
    // Its output folder is a private one, outside the user's folders, gone once the check is over.
    expect(seenJson.out.startsWith(root)).toBe(false);
    expect(existsSync(seenJson.out)).toBe(false);
    privateDir = path.dirname(seenJson.out);
    expect(await readdir(root)).toEqual(before);
  }, 30_000);

  it('a checker that crashes or is killed rejects with its last stderr line, else how it ended', async () => {
    expect(await check({ worker: 'crash.py' })).toMatchObject({
      accepted: false,
      reason: 'boom: the summary names no function',
      exitCode: 3,
    });
    expect(await check({ worker: 'silent.py' })).toMatchObject({ accepted: false, reason: 'exit 4', exitCode: 4 });
    expect(await check({ worker: 'segv.py' })).toMatchObject({
      accepted: false,
      reason: 'killed by SIGSEGV',
      exitCode: null,
    });
  }, 30_000);

  it('a checker that outlasts its time rejects saying so, within a bounded time, its process ended', async () => {
    const pidFile = path.join(await makeTempDir('monitor-check-pid-'), 'pid');
    const started = Date.now();
    const reply = await check({ worker: 'slow.py', args: [pidFile], timeoutMs: 1500 });
    expect(reply).toMatchObject({ accepted: false, reason: 'timed out after 1.5 s', exitCode: null });
    // The timeout, the kill grace (0.5 s) and the pipes' drain, well under the 120 s it would sleep.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(reply.durationMs).toBeGreaterThanOrEqual(1500);
    const [pid] = await readPids(pidFile);
    if (pid === undefined) throw new Error('slow.py wrote no pid');
    pids.add(pid);
    await until(() => !alive(pid), 'the timed-out checker to end');
    await rm(path.dirname(pidFile), { recursive: true, force: true });
  }, 30_000);

  it('a cancel ends the check with CANCELLED and ends its process', async () => {
    const pidFile = path.join(await makeTempDir('monitor-check-pid-'), 'pid');
    const controller = new AbortController();
    const call = failure(check({ worker: 'slow.py', args: [pidFile] }, controller.signal));
    const [pid] = await readPids(pidFile);
    if (pid === undefined) throw new Error('slow.py wrote no pid');
    pids.add(pid);
    controller.abort();
    expect((await call).code).toBe('CANCELLED');
    await until(() => !alive(pid), 'the cancelled checker to end');
    const aborted = new AbortController();
    aborted.abort();
    expect((await failure(check({ worker: 'judge.py' }, aborted.signal))).code).toBe('CANCELLED');
    await rm(path.dirname(pidFile), { recursive: true, force: true });
  }, 30_000);

  it('an unknown worker is INVALID_INPUT naming the workers there are, from checkerExists and checkAnswer', async () => {
    const exists = lends.checkerExists;
    if (!exists) throw new Error('no checkerExists');
    await exists('judge.py');
    await exists('check_patch.py');
    for (const name of ['nope.py', '../nope.py', '_common.py']) {
      const missing = await failure(exists(name));
      expect(missing.code, name).toBe('INVALID_INPUT');
      expect(missing.message).toContain('judge.py');
      expect(missing.message).toContain('check_patch.py');
      expect(missing.message).toContain('list_workers');
    }
    const answered = await failure(check({ worker: 'nope.py' }));
    expect(answered.code).toBe('INVALID_INPUT');
    expect(answered.message).toContain('list_workers');
  }, 30_000);

  it('a warm worker serves both calls on one process, its reply output the reason', async () => {
    const first = await check({ worker: 'warm_pid.py', answer: { text: 'first' } });
    const second = await check({ worker: 'warm_pid.py', answer: { text: 'x', json: { n: 2 } } });
    const pidOf = (reason: string | undefined): number => Number(/^pid (\d+) got /.exec(reason ?? '')?.[1]);
    expect(first).toMatchObject({ accepted: false, exitCode: 1, reason: expect.stringMatching(/got "first\\n"$/) });
    expect(second.reason).toMatch(/got \{"n": 2\}$/);
    const pid = pidOf(first.reason);
    pids.add(pid);
    expect(pid).toBeGreaterThan(0);
    expect(pidOf(second.reason)).toBe(pid);
    expect(alive(pid)).toBe(true);
  }, 30_000);

  it('waits for a slot the runs leave free, and gives up with TIMEOUT when none frees in time', async () => {
    const pool = script.instance.pool as ScriptPool;
    const controllers = [new AbortController(), new AbortController()];
    const dir = await makeTempDir('monitor-check-pid-');
    const holding = controllers.map((controller, at) =>
      failure(check({ worker: 'slow.py', args: [path.join(dir, `pid${at}`)] }, controller.signal)),
    );
    for (const at of [0, 1]) (await readPids(path.join(dir, `pid${at}`))).forEach((pid) => pids.add(pid));
    expect(pool.liveCards()[0]?.busy).toBe(2);
    const waited = await failure(check({ worker: 'judge.py', answer: { text: 'good' }, timeoutMs: 300 }));
    expect(waited.code).toBe('TIMEOUT');
    const queued = check({ worker: 'judge.py', answer: { text: 'good' } });
    controllers[0]?.abort();
    expect(await queued).toMatchObject({ accepted: true });
    controllers[1]?.abort();
    for (const held of holding) expect((await held).code).toBe('CANCELLED');
    await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('close ends the warm checker and removes the private folder', async () => {
    const reply = await check({ worker: 'warm_pid.py' });
    const pid = Number(/^pid (\d+) /.exec(reply.reason ?? '')?.[1]);
    pids.add(pid);
    expect(alive(pid)).toBe(true);
    expect(privateDir).toMatch(/monitor-check-/);
    expect(existsSync(privateDir)).toBe(true);
    await script.instance.close();
    expect(alive(pid)).toBe(false);
    expect(existsSync(privateDir)).toBe(false);
    expect((await failure(check({ worker: 'warm_pid.py' }))).code).toBe('SHUTTING_DOWN');
  }, 30_000);
});
