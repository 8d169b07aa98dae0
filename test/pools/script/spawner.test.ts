import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DirectSpawner, type Spawner, type SpawnRequest } from '../../../src/pools/script/spawner.js';
import { testProcesses } from '../../helpers/client.js';
import { alive, eventually, killQuietly, until } from '../../helpers/scripts.js';
import { bytesOf, ENV, finish, sh as shIn, useSpawnerFixture } from './spawning.js';

/** What every spawner must do alike: the relay (through python/spawn_helper.py) matches Node's own spawn. */

const fixture = useSpawnerFixture();
const sh = (script: string, args?: string[], more?: Partial<SpawnRequest>): SpawnRequest =>
  shIn(fixture.dir, script, args, more);

/** Fields 5 and 6 of /proc/<pid>/stat: process group and session. */
function groupAndSession(statLine: string): [number, number] {
  const fields = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
  return [Number(fields[2]), Number(fields[3])];
}

describe.each([
  ['relay (through the helper)', (): Spawner => fixture.relay()],
  ['direct (child_process.spawn)', (): Spawner => fixture.keep(new DirectSpawner())],
])('%s spawner', (_name, make) => {
  let spawner: Spawner;
  beforeAll(() => {
    spawner = make();
  });

  it('starts the process in a session and process group of its own, with the pid the server signals', async () => {
    const child = await spawner.start(sh('cat /proc/$$/stat; echo $$'));
    const { stdout, code } = await finish(child);
    const [stat = '', pid = ''] = stdout.trim().split('\n');
    expect(code).toBe(0);
    expect(Number(pid)).toBe(child.pid);
    expect(groupAndSession(stat)).toEqual([child.pid, child.pid]);
  });

  it('passes args literally, exactly the given environment and the cwd', async () => {
    const args = ['$(touch /tmp/pwned)', '; rm -rf /', '*', 'a b', "'q'", '\\n', 'ünï', 'lone \ud800 surrogate'];
    const printed = await finish(await spawner.start(sh('printf "%s\\n" "$@"; pwd', args)));
    expect(printed.stdout).toBe([...args.map((a) => a.replace('\ud800', '\ufffd')), fixture.dir].join('\n') + '\n');
    // env itself, not a shell (a shell drops names it cannot use, like ODD.NAME).
    const env = { ...ENV, ONE: 'x y', EMPTY: '', 'ODD.NAME': 'z', UTF: 'ü' };
    const seen = await finish(await spawner.start({ file: '/usr/bin/env', args: [], cwd: fixture.dir, env }));
    expect(seen.stdout.trim().split('\n').sort()).toEqual(
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .sort(),
    );
  });

  it('writes stdin text and closes it; without text, stdin is /dev/null', async () => {
    const big = 'x'.repeat(3 * 1024 * 1024 - 1) + '\n';
    const counted = await finish(await spawner.start({ ...sh('wc -c'), stdin: big }));
    expect(counted.stdout.trim()).toBe(String(big.length));
    const small = await finish(await spawner.start({ ...sh('cat'), stdin: 'héllo\n' }));
    expect(small.stdout).toBe('héllo\n');
    const none = await finish(await spawner.start(sh('cat; readlink /proc/$$/fd/0')));
    expect(none.stdout.trim()).toBe('/dev/null');
  });

  it('does not fail when the worker exits without reading its stdin', async () => {
    const result = await finish(await spawner.start({ ...sh('exit 0'), stdin: 'y'.repeat(4 * 1024 * 1024) }));
    expect(result.code).toBe(0);
  });

  it('relays stdout and stderr byte for byte, separately, also large and not UTF-8', async () => {
    const child = await spawner.start(sh('printf "\\377\\376a"; printf err >&2; head -c 9000000 /dev/zero'));
    const [stdout, stderr] = await Promise.all([bytesOf(child.stdout), bytesOf(child.stderr)]);
    expect(stdout.length).toBe(3 + 9_000_000);
    expect([...stdout.subarray(0, 3)]).toEqual([0xff, 0xfe, 0x61]);
    expect(stdout.subarray(3).every((b) => b === 0)).toBe(true);
    expect(stderr.toString()).toBe('err');
    expect(await child.exited).toEqual({ code: 0, signal: null });
  });

  it('holds back a paused stream: the worker waits instead of the server buffering its output', async () => {
    const total = 40 * 1024 * 1024;
    const child = await spawner.start(sh(`head -c ${total} /dev/zero`));
    child.stderr.resume();
    child.stdout.pause();
    await until(() => child.stdout.readableLength > 0, 'the first output');
    // Poll with a deadline: what must not happen is the buffer growing toward the 40 MB written.
    const overflowed = await eventually(() => child.stdout.readableLength > 1024 * 1024, 500, 20);
    expect(overflowed).toBe(false);
    expect((await bytesOf(child.stdout)).length).toBe(total);
    expect(await child.exited).toEqual({ code: 0, signal: null });
  });

  it('reports exit codes and signals', async () => {
    expect((await finish(await spawner.start(sh('exit 3')))).code).toBe(3);
    const killed = await finish(await spawner.start(sh('kill -TERM $$; sleep 5')));
    expect([killed.code, killed.signal]).toEqual([null, 'SIGTERM']);
  });

  it('rejects with the errno code when the process cannot start', async () => {
    const notExecutable = path.join(fixture.dir, 'plain.txt');
    await writeFile(notExecutable, 'echo hi\n');
    await chmod(notExecutable, 0o644);
    const cases: Array<[SpawnRequest, string]> = [
      [{ file: path.join(fixture.dir, 'missing'), args: [], cwd: fixture.dir, env: ENV }, 'ENOENT'],
      [{ file: notExecutable, args: [], cwd: fixture.dir, env: ENV }, 'EACCES'],
      [{ file: '/bin/sh', args: ['-c', 'true'], cwd: path.join(fixture.dir, 'gone'), env: ENV }, 'ENOENT'],
      [{ file: 'no-such-program-anywhere', args: [], cwd: fixture.dir, env: ENV }, 'ENOENT'],
    ];
    for (const [request, code] of cases) {
      const error = (await spawner.start(request).then(
        () => undefined,
        (e: unknown) => e,
      )) as NodeJS.ErrnoException | undefined;
      expect(error?.code, request.file).toBe(code);
      expect(error?.message).toBe(`spawn ${request.file} ${code}`);
    }
    await expect(
      spawner.start({ file: '/bin/echo', args: ['a\0b'], cwd: fixture.dir, env: ENV }),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
    });
  });

  it('runs an executable file without a #! line with /bin/sh, as Node does', async () => {
    const script = path.join(fixture.dir, 'no-shebang');
    await writeFile(script, 'echo "by sh: $0 $1"\n');
    await chmod(script, 0o755);
    const result = await finish(await spawner.start({ file: script, args: ['arg'], cwd: fixture.dir, env: ENV }));
    expect(result.stdout).toBe(`by sh: ${script} arg\n`);
  });

  it('finds a bare command name on the PATH of the given environment', async () => {
    const result = await finish(await spawner.start({ file: 'echo', args: ['found'], cwd: fixture.dir, env: ENV }));
    expect(result.stdout).toBe('found\n');
  });

  it('lets the server end the whole group by its pid, children included', async () => {
    const child = await spawner.start(sh('sleep 60 & echo $!; wait'));
    const first = await new Promise<string>((resolve) =>
      child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())),
    );
    const grandchild = Number(first.trim());
    child.stderr.resume();
    child.stdout.resume();
    expect(alive(grandchild)).toBe(true);
    expect(testProcesses.signalTree(child.pid, 'SIGKILL')).toBe(true);
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await child.closed;
    await until(() => !alive(grandchild), 'the grandchild to end with its group', 5000);
  });

  it('closes once the streams are destroyed when a descendant that left the group keeps them open', async () => {
    const child = await spawner.start(sh('setsid sleep 60 & echo $!'));
    const first = await new Promise<string>((resolve) =>
      child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())),
    );
    const escaped = Number(first.trim());
    try {
      child.stderr.resume();
      child.stdout.resume();
      expect(await child.exited).toEqual({ code: 0, signal: null });
      expect(
        await eventually(() => Promise.race([child.closed.then(() => true), Promise.resolve(false)]), 200, 20),
      ).toBe(false);
      child.stdout.destroy();
      child.stderr.destroy();
      await child.closed;
    } finally {
      killQuietly(escaped);
    }
  });

  it('runs many processes at once, each with its own output', async () => {
    const children = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        spawner.start({ ...sh('cat; echo " $1"; echo e$1 >&2', [String(i)]), stdin: `in${i}` }),
      ),
    );
    const results = await Promise.all(children.map(finish));
    results.forEach((result, i) => {
      expect(result.stdout).toBe(`in${i} ${i}\n`);
      expect(result.stderr).toBe(`e${i}\n`);
    });
  });
});
