import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { LINUX, type Platform } from '../../platform/index.js';

/**
 * Starting one process per task without stalling the server.
 *
 * Node's child_process.spawn (libuv 1.46 in Node 20) calls fork() on the calling thread, then
 * blocks reading a pipe until the child has exec'd. fork copies the page tables of the whole
 * server (time grows with its RSS), the child then tears that copy down in exec while the server
 * waits, and afterwards every page the server writes takes a copy-on-write fault. At one
 * process per task on 2 cores that was +10–15% over `xargs -P2`. A worker thread does not help:
 * it is the same process, so the fork still copies the same page tables.
 *
 * The relay spawner (relay-spawner.ts) hands the fork to a small long-lived helper
 * (python/spawn_helper.py): Python, whose subprocess module uses vfork (no page tables copied) and
 * whose address space is ~10 MB anyway. The helper starts each task in a session and process group
 * of its own, writes its stdin, reaps it, and relays its stdout/stderr and exit status over one
 * framed pipe (spawn-helper.ts). The server still signals the task's group itself (the pid is the
 * group id), so timeouts, cancel and the group journal work as before. The helper is also a child
 * subreaper: a task's descendant whose parent dies becomes the helper's child, however it left the
 * task's group, session or environment, and the server's sweeps (descendants.ts) have the helper
 * end those of tasks that have ended (the Adopter below).
 *
 * This file: what every spawner offers, and the direct one.
 */

/** One process to start: `file` with `args`, never through a shell. */
export interface SpawnRequest {
  file: string;
  args: readonly string[];
  cwd: string;
  /** The whole environment (nothing else is inherited). */
  env: Readonly<Record<string, string>>;
  /** Written to the process's stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string | undefined;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A started process: the leader of its own process group (pgid = pid). */
export interface SpawnedProcess {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the process has exited and was reaped; its pipes may still be open (a grandchild). */
  readonly exited: Promise<ExitStatus>;
  /** Resolves once it has exited and both streams have ended or been destroyed. */
  readonly closed: Promise<void>;
}

/**
 * A process that adopts the orphaned descendants of the tasks it starts (a Linux child subreaper:
 * the spawn helper), so that a stray which left its task's process group and cleared its
 * environment can still be found: by its parent.
 */
export interface Adopter {
  readonly pid: number;
  /** Processes found with `pid` as their parent ([pid, start from /proc]): it ends those that are strays of ended tasks. */
  sweep(found: ReadonlyArray<readonly [number, string]>): void;
}

export interface Spawner {
  /** `relay` (through the helper) or `direct` (child_process.spawn on this thread). */
  readonly mode: 'relay' | 'direct';
  /** The adopter of the tasks' orphans while there is one (the helper, where it could become a subreaper). */
  readonly adopter?: Adopter | undefined;
  /** Resolves once the process runs (exec succeeded); rejects with a SpawnError when it could not start. */
  start(request: SpawnRequest): Promise<SpawnedProcess>;
  /** Ends the helper; process groups it still has are killed (SIGKILL). */
  close(): Promise<void>;
}

/** Why a process did not start, shaped like Node's own spawn errors (`code` ENOENT, EACCES, …). */
export class SpawnError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path: string;
  readonly spawnargs: readonly string[];

  constructor(file: string, args: readonly string[], code: string, errno: number, message?: string) {
    super(message ?? `spawn ${file} ${code}`);
    this.name = 'SpawnError';
    this.code = code;
    this.errno = errno;
    this.syscall = `spawn ${file}`;
    this.path = file;
    this.spawnargs = args;
  }
}

/** child_process.spawn on the calling thread: the fallback, and the reference the relay must match. */
export class DirectSpawner implements Spawner {
  readonly mode = 'direct';
  private readonly platform: Platform;

  constructor(platform: Platform = LINUX) {
    this.platform = platform;
  }

  async start(request: SpawnRequest): Promise<SpawnedProcess> {
    const command = this.platform.commandLine(request.file, request.args);
    const child = spawn(command.file, command.args, {
      cwd: request.cwd,
      env: request.env,
      // A tree the platform can stop: its own session and process group on posix; on Windows no
      // console window, the tree found by taskkill /T.
      ...this.platform.workerSpawnOptions,
      ...(command.windowsVerbatimArguments ? { windowsVerbatimArguments: true } : {}),
      stdio: [request.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise<ExitStatus>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      // Also keeps a later 'error' (none is expected once spawned) from being thrown as unhandled.
      child.once('error', reject);
    });
    if (request.stdin !== undefined && child.stdin) {
      // A worker may exit without reading all of its stdin: EPIPE here is not a failure.
      child.stdin.on('error', () => undefined);
      child.stdin.end(request.stdin);
    }
    if (child.pid === undefined || !child.stdout || !child.stderr) throw new Error('spawn returned no pid or pipes');
    return { pid: child.pid, stdout: child.stdout, stderr: child.stderr, exited, closed };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
