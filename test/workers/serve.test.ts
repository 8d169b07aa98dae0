import { writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { makeTempDir, repoRoot } from '../helpers/client.js';
import { bundledWorkers } from '../helpers/scripts.js';
import { pythonExecutable, runCold, WarmWorker } from '../helpers/warm-harness.js';

/** The serve loops workers are written on: workers/_common.py's serve() and workers/_serve.mjs. */
const cleanups = cleanupsAfterEach();
let python: string;
let folder: string;
let probe: string;

/** A worker on _common.serve whose first argument says what its task does. */
const PROBE = `
import os
import sys

sys.path.insert(0, ${JSON.stringify(bundledWorkers)})
import _common

fail = _common.failer("probe")


def handle(task):
    action = task.args[0] if task.args else "echo"
    if action == "print":
        print("printed on stdout", {"id": 99})
        print("printed on stderr", file=sys.stderr)
    elif action == "fail":
        fail("asked to fail")
    elif action == "raise":
        raise RuntimeError("asked to raise")
    elif action == "exit":
        sys.exit(int(task.args[1]))
    elif action == "text":
        return "plain text\\n"
    elif action == "nothing":
        return None
    elif action == "nan":
        return {"x": float("nan")}
    elif action == "unserializable":
        return {"x": {1, 2}}
    elif action == "wander":
        os.chdir("/")
        sys.stdout = open(os.devnull, "w")
    elif action == "old-style":
        return {"argv": sys.argv[1:], "stdin": sys.stdin.read()}
    elif action == "big":
        return {"data": "x" * int(task.args[1])}
    return {
        "args": task.args,
        "stdin": task.stdin,
        "json": task.json,
        "env": {key: os.environ.get(key) for key in ("MONITOR_TASK_INDEX", "MONITOR_STDIN_FORMAT", "MONITOR_WARM")},
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "protocol_fds_inherited": [os.get_inheritable(fd) for fd in (3, 4) if _fd_open(fd)],
    }


def _fd_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    _common.serve(handle)
`;

const nodeEcho = path.join(repoRoot, 'test', 'fixtures', 'warm-workers', 'node-echo.mjs');

beforeAll(async () => {
  python = await pythonExecutable();
  folder = await makeTempDir('monitor-serve-');
  probe = path.join(folder, 'probe.py');
  await writeFile(probe, PROBE);
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

const baseEnv = (): Record<string, string> => ({ PATH: process.env.PATH ?? '/usr/bin:/bin' });

interface Flavour {
  name: string;
  command: () => string;
  args: () => string[];
  /** The name failures are prefixed with on stderr. */
  worker: string;
}

const flavours: Flavour[] = [
  { name: 'workers/_common.py serve()', command: () => python, args: () => ['-s', '-E', probe], worker: 'probe' },
  { name: 'workers/_serve.mjs serve()', command: () => process.execPath, args: () => [nodeEcho], worker: 'node-echo' },
];

for (const flavour of flavours) {
  describe(flavour.name, () => {
    const cold = (args: string[], stdin?: string, env: Record<string, string> = {}): ReturnType<typeof runCold> =>
      runCold(flavour.command(), [...flavour.args(), ...args], {
        cwd: folder,
        env: { ...baseEnv(), ...env },
        ...(stdin === undefined ? {} : { stdin }),
      });

    function startWarm(): WarmWorker {
      const warm = WarmWorker.start(flavour.command(), flavour.args(), { cwd: folder, env: baseEnv() });
      cleanups.push(async () => {
        await warm.kill();
      });
      return warm;
    }

    it('cold: args and stdin in, one JSON document out, exit 0', async () => {
      const run = await cold(['a b', '$x'], '{"k": [1, "é"]}\n', {
        MONITOR_STDIN_FORMAT: 'json',
        MONITOR_TASK_INDEX: '4',
      });
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout.endsWith('\n')).toBe(true);
      expect(run.stdout.trimEnd()).not.toContain('\n');
      expect(JSON.parse(run.stdout)).toMatchObject({
        args: ['a b', '$x'],
        stdin: '{"k": [1, "é"]}\n',
        json: { k: [1, 'é'] },
        env: { MONITOR_TASK_INDEX: '4', MONITOR_STDIN_FORMAT: 'json', MONITOR_WARM: null },
      });
    });

    it('cold: no stdin gives stdin and json null; text stdin is not parsed', async () => {
      expect(JSON.parse((await cold([])).stdout)).toMatchObject({ stdin: null, json: null });
      expect(JSON.parse((await cold([], 'plain', { MONITOR_STDIN_FORMAT: 'text' })).stdout)).toMatchObject({
        stdin: 'plain',
        json: null,
      });
    });

    it('cold: fail() is exit 2 with `<name>: message` on stderr; JSON stdin that is not JSON fails the same way', async () => {
      expect(await cold(['fail'])).toEqual({ code: 2, stdout: '', stderr: `${flavour.worker}: asked to fail\n` });
      const bad = await cold([], '{oops', { MONITOR_STDIN_FORMAT: 'json' });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(new RegExp(`^${flavour.worker}: stdin is not JSON: `));
    });

    it('cold: a string result is printed as is', async () => {
      const run = await cold(['text']);
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(flavour.worker === 'probe' ? 'plain text\n' : '{"args":["text"]}');
    });

    it('warm: one process serves task after task, each with its own input and MONITOR_* variables', async () => {
      const warm = startWarm();
      const first = await warm.send({ args: ['one'], env: { MONITOR_TASK_INDEX: '0', MONITOR_STDIN_FORMAT: 'none' } });
      const second = await warm.send({
        args: [],
        json: { n: 2, s: 'ünï ☃ \u2028' },
        env: { MONITOR_TASK_INDEX: '1', MONITOR_STDIN_FORMAT: 'json' },
      });
      const third = await warm.send({ stdin: 'line 1\nline 2\n' });
      expect(first.reply).toMatchObject({
        id: 1,
        exit_code: 0,
        result: {
          args: ['one'],
          stdin: null,
          json: null,
          env: { MONITOR_TASK_INDEX: '0', MONITOR_STDIN_FORMAT: 'none', MONITOR_WARM: null },
        },
      });
      expect(second.reply).toMatchObject({
        id: 2,
        exit_code: 0,
        result: {
          args: [],
          json: { n: 2, s: 'ünï ☃ \u2028' },
          stdin: '{"n":2,"s":"ünï ☃ \u2028"}\n',
          env: { MONITOR_TASK_INDEX: '1' },
        },
      });
      // A task's variables are undone after it: the third task set none.
      expect(third.reply).toMatchObject({
        id: 3,
        exit_code: 0,
        result: {
          stdin: 'line 1\nline 2\n',
          json: null,
          env: { MONITOR_TASK_INDEX: null, MONITOR_STDIN_FORMAT: null },
        },
      });
      const pids = [first, second, third].map(({ reply }) => (reply.result as { pid: number }).pid);
      expect(new Set(pids)).toEqual(new Set([warm.pid]));
      expect([first.log, second.log, third.log]).toEqual(['', '', '']);
      expect(await warm.end()).toEqual({ code: 0, signal: null, log: '' });
    });

    it('warm: what a task prints goes to its log, never into the replies', async () => {
      const warm = startWarm();
      const printed = await warm.send({ args: ['print'], env: { MONITOR_TASK_INDEX: '7' } });
      expect(printed.reply).toMatchObject({ id: 1, exit_code: 0, result: { args: ['print'] } });
      expect(printed.log).toContain('printed on stdout');
      expect(printed.log).toContain('printed on stderr');
      const next = await warm.send({ args: ['quiet'] });
      expect(next).toMatchObject({ reply: { id: 2, exit_code: 0 }, log: '' });
      expect(warm.replyLines.map((line) => JSON.parse(line) as { id: number }).map((reply) => reply.id)).toEqual([
        1, 2,
      ]);
    });

    it('warm: fail() gives exit code 2 with its message in the log, an exception exit code 1, and the process serves on', async () => {
      const warm = startWarm();
      const failed = await warm.send({ args: ['fail'] });
      expect(failed).toEqual({ reply: { id: 1, exit_code: 2 }, log: `${flavour.worker}: asked to fail\n` });
      const thrown = await warm.send({ args: [flavour.worker === 'probe' ? 'raise' : 'throw'] });
      expect(thrown.reply).toEqual({ id: 2, exit_code: 1 });
      expect(thrown.log).toMatch(/asked to (raise|throw)/);
      expect(thrown.log).toMatch(/Traceback|at handle/);
      const fine = await warm.send({ args: ['after'] });
      expect(fine.reply).toMatchObject({ id: 3, exit_code: 0, result: { args: ['after'], pid: warm.pid } });
    });

    it('warm: a string result is sent as output', async () => {
      const warm = startWarm();
      const { reply } = await warm.send({ args: ['text'] });
      expect(reply).toEqual({
        id: 1,
        exit_code: 0,
        output: flavour.worker === 'probe' ? 'plain text\n' : '{"args":["text"]}',
      });
    });

    it('warm: a line that is not a request is answered with exit code 1 (id null when it has none) and the next one served', async () => {
      const warm = startWarm();
      const garbage = await warm.sendLine('this is not JSON');
      expect(garbage.reply).toEqual({ id: null, exit_code: 1 });
      expect(garbage.log).toMatch(/bad request/);
      const badArgs = await warm.sendLine('{"id": 41, "args": "not a list"}');
      expect(badArgs.reply).toEqual({ id: 41, exit_code: 1 });
      expect((await warm.sendLine('{"id": 42, "args": ["fine"]}')).reply).toMatchObject({ id: 42, exit_code: 0 });
    });

    it('warm: echoes the id exactly as the request gave it (a random integer, or any JSON value)', async () => {
      const warm = startWarm();
      for (const id of [1844674407, 2147483646, 'a1b2c3d4e5f6', 7.5])
        expect((await warm.sendLine(JSON.stringify({ id, args: ['x'] }))).reply).toMatchObject({ id, exit_code: 0 });
    });

    it('warm: a child process of a task is not told to run warm and does not hold the protocol pipes', async () => {
      const warm = startWarm();
      const { reply } = await warm.send({});
      expect(reply.result).toMatchObject({ env: { MONITOR_WARM: null } });
      if (flavour.worker === 'probe') expect(reply.result).toMatchObject({ protocol_fds_inherited: [false, false] });
    });
  });
}

describe('workers/_common.py serve(), Python specifics', () => {
  function startProbe(): WarmWorker {
    const warm = WarmWorker.start(python, ['-s', '-E', probe], { cwd: folder, env: baseEnv() });
    cleanups.push(async () => {
      await warm.kill();
    });
    return warm;
  }

  it('gives code written for cold runs its input as sys.argv and sys.stdin', async () => {
    const warm = startProbe();
    expect((await warm.send({ args: ['old-style', 'x'], stdin: 'from stdin' })).reply.result).toEqual({
      argv: ['old-style', 'x'],
      stdin: 'from stdin',
    });
    expect((await warm.send({ args: ['old-style'], json: { a: 1 } })).reply.result).toEqual({
      argv: ['old-style'],
      stdin: '{"a":1}\n',
    });
    expect((await warm.send({ args: ['old-style'] })).reply.result).toEqual({ argv: ['old-style'], stdin: '' });
  });

  it("sys.exit(n) in a task is that task's exit code", async () => {
    const warm = startProbe();
    expect((await warm.send({ args: ['exit', '3'] })).reply).toEqual({ id: 1, exit_code: 3 });
    expect((await warm.send({ args: ['exit', '0'] })).reply).toEqual({ id: 2, exit_code: 0 });
    expect((await warm.send({ args: ['nothing'] })).reply).toEqual({ id: 3, exit_code: 0 });
  });

  it('a task that changes the working folder or sys.stdout does not change them for the next', async () => {
    const warm = startProbe();
    await warm.send({ args: ['wander'] });
    const { reply, log } = await warm.send({ args: ['print'] });
    expect(reply.result).toMatchObject({ cwd: folder });
    expect(log).toContain('printed on stdout');
  });

  it('a result JSON cannot hold is sent as the text a cold run prints (NaN), or fails the task like a cold run (a set)', async () => {
    const warm = startProbe();
    const nan = await warm.send({ args: ['nan'] });
    expect(nan.reply).toEqual({ id: 1, exit_code: 0, output: '{"x":NaN}\n' });
    expect((await cold(['nan'])).stdout).toBe('{"x":NaN}\n');
    const set = await warm.send({ args: ['unserializable'] });
    expect(set.reply).toEqual({ id: 2, exit_code: 1 });
    expect(set.log).toMatch(/TypeError: Object of type set is not JSON serializable/);
    expect((await cold(['unserializable'])).code).toBe(1);
    expect((await warm.send({ args: ['after'] })).reply.exit_code).toBe(0);
  });

  it('a reply of several MB comes whole, on one line', async () => {
    const warm = startProbe();
    const { reply } = await warm.send({ args: ['big', String(4 * 1024 * 1024)] });
    expect((reply.result as { data: string }).data).toHaveLength(4 * 1024 * 1024);
    expect(warm.replyLines).toHaveLength(1);
  });

  function cold(args: string[]): ReturnType<typeof runCold> {
    return runCold(python, ['-s', '-E', probe, ...args], { cwd: folder, env: baseEnv() });
  }
});
