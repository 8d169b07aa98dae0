import { LINUX } from '../../../src/platform/index.js';
import { execFileSync } from 'node:child_process';
import { realpath, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { RelaySpawner } from '../../../src/pools/script/relay-spawner.js';
import type { SpawnedProcess, Spawner, SpawnRequest } from '../../../src/pools/script/spawner.js';
import { makeTempDir, testProcesses } from '../../helpers/client.js';

/** What the spawner tests share: a real Python, a folder to run in, spawners closed after the file. */

/** The real interpreter, as the pool resolves it (a pyenv shim would cost ~300 ms per helper start). */
export function realPython(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
}

export interface SpawnerFixture {
  /** A real folder (symlinks resolved) the processes run in. */
  readonly dir: string;
  readonly python: string;
  /** A relay spawner closed after the file's tests. */
  relay(options?: { idleMs?: number; python?: () => Promise<string>; helperFile?: string }): RelaySpawner;
  /** Any spawner, closed after the file's tests. */
  keep<T extends Spawner>(spawner: T): T;
}

/** Registers the file's beforeAll/afterAll; the fields are there once beforeAll ran. */
export function useSpawnerFixture(): SpawnerFixture {
  const spawners: Spawner[] = [];
  const state = { dir: '', python: '' };
  beforeAll(async () => {
    state.python = realPython();
    state.dir = await realpath(await makeTempDir('monitor-spawner-'));
  });
  afterAll(async () => {
    await Promise.all(spawners.map((s) => s.close()));
    await rm(state.dir, { recursive: true, force: true });
  });
  const keep = <T extends Spawner>(spawner: T): T => {
    spawners.push(spawner);
    return spawner;
  };
  return {
    get dir() {
      return state.dir;
    },
    get python() {
      return state.python;
    },
    keep,
    relay: (options = {}) =>
      keep(
        new RelaySpawner({
          python: options.python ?? (() => Promise.resolve(state.python)),
          log: silentLogger,
          processes: testProcesses,
          platform: LINUX,
          ...(options.idleMs === undefined ? {} : { idleMs: options.idleMs }),
          ...(options.helperFile === undefined ? {} : { helperFile: options.helperFile }),
        }),
      ),
  };
}

export const ENV = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' };

/** `sh -c script` with positional args in `cwd`: the processes under test, started for real. */
export function sh(cwd: string, script: string, args: string[] = [], more: Partial<SpawnRequest> = {}): SpawnRequest {
  return { file: '/bin/sh', args: ['-c', script, 'sh', ...args], cwd, env: ENV, ...more };
}

export async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Everything a process wrote, and how it ended. */
export async function finish(
  child: SpawnedProcess,
): Promise<{ stdout: string; stderr: string; code: number | null; signal: string | null }> {
  const [stdout, stderr, status] = await Promise.all([bytesOf(child.stdout), bytesOf(child.stderr), child.exited]);
  await child.closed;
  return { stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8'), ...status };
}
