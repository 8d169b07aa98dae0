import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from '../../helpers/client.js';
import { alive, until } from '../../helpers/scripts.js';
import { ENV, useSpawnerFixture } from './spawning.js';

/**
 * python/spawn_helper.py on its own, as a Python process spoken to over its protocol (JSON lines in,
 * frames out; see the top of that file), without the server's side of it (spawn-helper.ts).
 */

const HELPER = path.join(repoRoot, 'python', 'spawn_helper.py');
const [READY, STARTED, FAILED, OUT, ERR, OUT_END, ERR_END, EXIT] = [0, 1, 2, 3, 4, 5, 6, 7];
const HEADER_BYTES = 9;

interface Frame {
  kind: number;
  id: number;
  payload: Buffer;
}

const fixture = useSpawnerFixture();
const running: HelperProcess[] = [];

afterEach(() => {
  for (const helper of running.splice(0)) helper.child.kill('SIGKILL');
});

/** A helper process, its frames as they came, and its exit. */
class HelperProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly frames: Frame[] = [];
  readonly exited: Promise<{ code: number | null; stderr: string }>;
  private buffered = Buffer.alloc(0);
  private stderr = '';

  constructor(python: string) {
    this.child = spawn(python, ['-I', '-S', HELPER], { cwd: '/', env: ENV });
    this.child.stdout.on('data', (chunk: Buffer) => this.read(chunk));
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.once('close', (code) => resolve({ code, stderr: this.stderr })));
    running.push(this);
  }

  send(...messages: Array<Record<string, unknown> | string>): void {
    // One write: the helper reads them in one go, before it reads any output.
    this.child.stdin.write(messages.map((m) => `${typeof m === 'string' ? m : JSON.stringify(m)}\n`).join(''));
  }

  start(id: number, script: string, more: Record<string, unknown> = {}): Record<string, unknown> {
    return { op: 'start', id, file: '/bin/sh', args: ['-c', script], cwd: fixture.dir, env: ENV, stdin: null, ...more };
  }

  /** The frames of task `id` so far. */
  of(id: number, kind?: number): Frame[] {
    return this.frames.filter((f) => f.id === id && (kind === undefined || f.kind === kind));
  }

  /** Waits for task `id`'s frame of `kind`. */
  async frame(id: number, kind: number): Promise<Frame> {
    await until(() => this.of(id, kind).length > 0, `frame ${kind} of task ${id}`);
    return this.of(id, kind)[0] as Frame;
  }

  /** Waits until task `id` has exited and both of its streams ended; what it printed and how it ended. */
  async finished(id: number): Promise<{ stdout: string; stderr: string; exit: unknown }> {
    await until(() => [EXIT, OUT_END, ERR_END].every((kind) => this.of(id, kind).length > 0), `the end of task ${id}`);
    const text = (kind: number): string => Buffer.concat(this.of(id, kind).map((f) => f.payload)).toString('utf8');
    return { stdout: text(OUT), stderr: text(ERR), exit: json(await this.frame(id, EXIT)) };
  }

  private read(chunk: Buffer): void {
    let data = Buffer.concat([this.buffered, chunk]);
    while (data.length >= HEADER_BYTES && data.length >= HEADER_BYTES + data.readUInt32BE(5)) {
      const length = data.readUInt32BE(5);
      this.frames.push({
        kind: data.readUInt8(0),
        id: data.readUInt32BE(1),
        payload: Buffer.from(data.subarray(HEADER_BYTES, HEADER_BYTES + length)),
      });
      data = data.subarray(HEADER_BYTES + length);
    }
    this.buffered = Buffer.from(data);
  }
}

const json = (frame: Frame): unknown => JSON.parse(frame.payload.toString('utf8'));

/** A daemon as a careless worker starts one: its own session, an empty environment, the pipes let go. */
const DAEMON = 'setsid env -i sleep 60 </dev/null >/dev/null 2>&1 &';

const pidOut = (frame: Frame): number => Number(frame.payload.toString('latin1').trim());

/** A process's parent and start (clock ticks since boot) from /proc, or undefined once it is gone (or a zombie). */
function statOf(pid: number): { ppid: number; start: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : { ppid: Number(fields[1]), start: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/** Clock ticks since boot now (USER_HZ is 100 on the systems the tests run on). */
const uptimeTicks = (): number => Math.floor(Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 100);

/** What the server's sweep hands the helper: the processes whose parent it is, with their starts. */
function childrenOf(parent: number): Array<[number, number]> {
  const found: Array<[number, number]> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = statOf(Number(name));
    if (stat?.ppid === parent) found.push([Number(name), stat.start]);
  }
  return found;
}

async function ready(): Promise<HelperProcess> {
  const helper = new HelperProcess(fixture.python);
  await helper.frame(0, READY);
  return helper;
}

describe('python/spawn_helper.py over its protocol', () => {
  it('says READY first, then runs a task: STARTED with its pid, its output, both ends and its exit', async () => {
    const helper = await ready();
    expect(helper.frames[0]).toMatchObject({ kind: READY, id: 0 });
    expect(json(helper.frames[0] as Frame)).toEqual({ subreaper: true });
    helper.send(helper.start(1, 'echo $$; echo oops >&2; exit 3'));
    const started = await helper.frame(1, STARTED);
    const done = await helper.finished(1);
    expect(done).toEqual({
      stdout: `${started.payload.toString('latin1')}\n`,
      stderr: 'oops\n',
      exit: { code: 3, signal: null },
    });
  });

  it('passes args, cwd and exactly the given environment; writes stdin text, else stdin is /dev/null', async () => {
    const helper = await ready();
    helper.send(
      helper.start(1, 'printf "%s|" "$@"; pwd', { args: ['-c', 'printf "%s|" "$@"; pwd', 'sh', 'a b', '$X'] }),
      helper.start(2, 'cat', { stdin: 'héllo\n' }),
      helper.start(3, 'cat; readlink /proc/$$/fd/0'),
      { ...helper.start(4, ''), file: '/usr/bin/env', args: [], env: { ONLY: 'this', 'ODD.NAME': 'z' } },
    );
    expect((await helper.finished(1)).stdout).toBe(`a b|$X|${fixture.dir}\n`);
    expect((await helper.finished(2)).stdout).toBe('héllo\n');
    expect((await helper.finished(3)).stdout).toBe('/dev/null\n');
    expect((await helper.finished(4)).stdout).toBe('ONLY=this\nODD.NAME=z\n');
  });

  it('answers FAILED with the errno when a process cannot start, and EINVAL for what exec cannot take', async () => {
    const plain = path.join(fixture.dir, 'plain.txt');
    await writeFile(plain, 'echo hi\n');
    await chmod(plain, 0o644);
    const helper = await ready();
    helper.send(
      { ...helper.start(1, ''), file: path.join(fixture.dir, 'missing'), args: [] },
      { ...helper.start(2, ''), file: plain, args: [] },
      helper.start(3, 'true', { cwd: path.join(fixture.dir, 'gone') }),
      helper.start(4, 'true', { args: ['-c', 'true', 'a\0b'] }),
      helper.start(5, 'true', { env: { NUMBER: 5 } }),
    );
    const failures = await Promise.all([1, 2, 3, 4, 5].map(async (id) => json(await helper.frame(id, FAILED))));
    expect(failures).toMatchObject([
      { errno: 2, message: 'No such file or directory' },
      { errno: 13, message: 'Permission denied' },
      { errno: 2 },
      { errno: 22, message: expect.stringMatching(/null byte/) as unknown },
      { errno: 22 },
    ]);
    for (const id of [1, 2, 3, 4, 5]) expect(helper.of(id).map((f) => f.kind)).toEqual([FAILED]);
  });

  it('runs an executable without a #! line with /bin/sh, as Node does', async () => {
    const script = path.join(fixture.dir, 'no-shebang-helper');
    await writeFile(script, 'echo "by sh: $1"\n');
    await chmod(script, 0o755);
    const helper = await ready();
    helper.send({ ...helper.start(1, ''), file: script, args: ['arg'] });
    expect((await helper.finished(1)).stdout).toBe('by sh: arg\n');
  });

  it('reports a signal by its name', async () => {
    const helper = await ready();
    helper.send(helper.start(1, 'kill -TERM $$; sleep 5'));
    expect((await helper.finished(1)).exit).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('stops reading a paused stream (the worker waits) and goes on at resume', async () => {
    const helper = await ready();
    const total = 1024 * 1024;
    // Paused before its first read: no OUT frame until resumed, and the worker blocks on its full pipe.
    helper.send(helper.start(1, `head -c ${total} /dev/zero`), { op: 'pause', id: 1, stream: 0 });
    helper.send(helper.start(2, 'echo meanwhile'));
    expect((await helper.finished(2)).stdout).toBe('meanwhile\n');
    expect(helper.of(1).map((f) => f.kind)).toEqual([STARTED]);
    helper.send({ op: 'resume', id: 1, stream: 0 });
    const done = await helper.finished(1);
    expect(done.stdout.length).toBe(total);
    expect(done.exit).toEqual({ code: 0, signal: null });
  });

  it('closes a stream on request (no end frame for it; a worker still writing gets SIGPIPE)', async () => {
    const helper = await ready();
    helper.send(helper.start(1, 'exec yes'));
    await helper.frame(1, OUT);
    helper.send({ op: 'close', id: 1, stream: 0 });
    expect(json(await helper.frame(1, EXIT))).toEqual({ code: null, signal: 'SIGPIPE' });
    await helper.frame(1, ERR_END);
    expect(helper.of(1, OUT_END)).toEqual([]);
  });

  it('ignores requests for a task it does not know', async () => {
    const helper = await ready();
    helper.send({ op: 'pause', id: 99, stream: 0 }, { op: 'close', id: 98, stream: 1 }, helper.start(1, 'echo still'));
    expect((await helper.finished(1)).stdout).toBe('still\n');
    expect(helper.frames.filter((f) => f.id === 98 || f.id === 99)).toEqual([]);
  });

  it('at EOF on its stdin, kills the process groups it started and exits 0', async () => {
    const helper = await ready();
    helper.send(helper.start(1, 'sleep 60 & echo $!; wait'));
    const grandchild = Number((await helper.frame(1, OUT)).payload.toString('latin1').trim());
    const pid = Number((await helper.frame(1, STARTED)).payload.toString('latin1'));
    helper.child.stdin.end();
    expect((await helper.exited).code).toBe(0);
    await until(() => !alive(pid) && !alive(grandchild), 'the task and its child to be killed', 5000);
  });

  it('adopts the orphans of its tasks and, asked to sweep, ends those that started before every task still running', async () => {
    const helper = await ready();
    const helperPid = helper.child.pid ?? 0;
    // Task 1 leaves a daemon with an empty environment in a session of its own, and exits.
    helper.send(helper.start(1, `${DAEMON} echo $!`));
    const early = pidOut(await helper.frame(1, OUT));
    await helper.frame(1, EXIT);
    await until(() => statOf(early)?.ppid === helperPid, 'the orphan to be adopted by the helper');
    // Task 2 starts (a tick later) and keeps running; its daemon is orphaned at once (a double fork).
    const earlyStart = statOf(early)?.start ?? 0;
    await until(() => uptimeTicks() > earlyStart + 2, 'a later clock tick');
    helper.send(helper.start(2, `(${DAEMON} echo $!); exec sleep 60`));
    const worker = Number((await helper.frame(2, STARTED)).payload.toString('latin1'));
    const late = pidOut(await helper.frame(2, OUT));
    await until(() => statOf(late)?.ppid === helperPid, "the running task's orphan to be adopted");
    expect(childrenOf(helperPid).map(([pid]) => pid)).toEqual(expect.arrayContaining([early, late, worker]));
    helper.send({ op: 'sweep', procs: childrenOf(helperPid) });
    await until(() => !alive(early), "the ended task's stray to be ended", 5000);
    // Task 2 still runs and started before it: its daemon may be its own, and stays (one request: swept together).
    expect(alive(late) && alive(worker)).toBe(true);
    process.kill(-worker, 'SIGKILL');
    await helper.frame(2, EXIT);
    helper.send({ op: 'sweep', procs: childrenOf(helperPid) });
    await until(() => !alive(late), 'the stray of the task that ended since to be ended', 5000);
  });

  it('after ending a stray, also ends the children it left in sessions of their own', async () => {
    const helper = await ready();
    const helperPid = helper.child.pid ?? 0;
    helper.send(helper.start(1, `(setsid sh -c '${DAEMON} echo $$ $!; exec env -i sleep 60' &)`));
    const [leader = 0, inner = 0] = (await helper.frame(1, OUT)).payload
      .toString('latin1')
      .trim()
      .split(' ')
      .map(Number);
    await helper.frame(1, EXIT);
    await until(() => statOf(leader)?.ppid === helperPid, 'the session leader to be adopted');
    expect(statOf(inner)?.ppid).toBe(leader);
    helper.send({ op: 'sweep', procs: childrenOf(helperPid) });
    await until(() => !alive(leader) && !alive(inner), 'the stray and its child to be ended', 5000);
  });

  it('at EOF on its stdin, also ends the strays it adopted', async () => {
    const helper = await ready();
    helper.send(helper.start(1, `${DAEMON} echo $!`));
    const daemon = pidOut(await helper.frame(1, OUT));
    await helper.frame(1, EXIT);
    await until(() => statOf(daemon)?.ppid === helper.child.pid, 'the orphan to be adopted');
    helper.child.stdin.end();
    expect((await helper.exited).code).toBe(0);
    await until(() => !alive(daemon), 'the adopted stray to be ended', 5000);
  });

  it('ends with a traceback naming its file on a request that is not JSON (the server sends none)', async () => {
    const helper = await ready();
    helper.send('not json');
    const { code, stderr } = await helper.exited;
    expect(code).not.toBe(0);
    expect(stderr).toContain('spawn_helper.py');
    expect(stderr).toMatch(/JSONDecodeError/);
  });
});
