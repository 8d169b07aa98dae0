import { type ChildProcess, spawn as spawnProcess, type SpawnOptions, type StdioOptions } from 'node:child_process';
import { Readable, type Stream } from 'node:stream';
import type { TaskError } from '../../errors.js';
import { LINUX, type Platform } from '../../platform/index.js';
import type { ProcessControl } from '../../processes.js';
import type { LaunchPlan } from './catalog.js';
import type { Descendants } from './descendants.js';
import type { GroupRecords } from './orphans.js';
import type { SpawnedProcess, Spawner } from './spawner.js';

/**
 * After the worker exits, how long its pipes may stay open at most (a stray that left the group
 * holds them, or keeps writing to them).
 */
const DRAIN_MS = 2000;
/** After the worker exits, pipes that stay quiet this long are closed on our side (a stray may hold them open). */
const QUIET_MS = 50;

/** Everything per job that tasks share, worked out once (not once per task). */
export interface RunPlan {
  launch: LaunchPlan;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  /** Tasks go to long-lived processes (the job asked for it and the worker declares it; see warm.ts). */
  warm: boolean;
  /** Cold runs take several inputs each (the job asked for it and the worker declares `pack: files`; see pack.ts). */
  pack: boolean;
}

/** What starting a worker process needs from the pool, cold or warm. */
export interface LaunchDeps {
  allowedRoots: readonly string[];
  /** How workers start and stop on this system (Linux when not given). */
  platform?: Platform | undefined;
  /** Signals worker process groups (timeouts, cancel, clean-up after exit). */
  processes: Pick<ProcessControl, 'signalTree'>;
  /** Where running process groups are recorded, so the next start can end what a crash left running. */
  groupRecords?: GroupRecords | undefined;
  /** Finds and ends what a worker started that left its process group (see descendants.ts). */
  descendants?: Descendants | undefined;
}

/**
 * A worker's environment: the job's (the server's own less its secrets, plus the job's `env`),
 * then the server's MONITOR_* variables, `perProcess` among them (a cold task's index, attempt and
 * stdin format; MONITOR_WARM for a warm process).
 */
export function workerEnv(
  plan: RunPlan,
  runEnv: Readonly<Record<string, string>> | undefined,
  where: { jobId: string; outputDir: string; allowedRoots: readonly string[] },
  perProcess: Readonly<Record<string, string>>,
  platform: Platform = LINUX,
): Record<string, string> {
  return {
    // First: a reader of /proc/<pid>/environ finds it early (see descendants.ts).
    ...runEnv,
    ...plan.env,
    // A server started by another's worker inherited that one's token: its workers carry its own.
    ...runEnv,
    MONITOR_JOB_ID: where.jobId,
    ...perProcess,
    MONITOR_OUTPUT_DIR: where.outputDir,
    // The bundled workers read files only inside these (a worker's args are paths of the model's choosing).
    MONITOR_ALLOWED_ROOTS: where.allowedRoots.join(platform.path.delimiter),
  };
}

/**
 * How every worker process is started: the job's cwd, never a shell, and as a tree the platform
 * can stop (its own process group on posix; on Windows no console window of its own).
 */
export function workerSpawnOptions(
  plan: RunPlan,
  env: Record<string, string>,
  stdio: StdioOptions,
  platform: Platform = LINUX,
): SpawnOptions {
  return { cwd: plan.cwd, env, ...platform.workerSpawnOptions, stdio };
}

/** A worker process as started by startWorker: its group tracked until `ended`. */
export interface StartedWorker {
  subprocess: ChildProcess;
  pid: number | undefined;
  /** The error that kept it from starting (the 'error' event), once known. */
  readonly startError: NodeJS.ErrnoException | undefined;
  /** Signals its whole process group; a group already gone is fine. */
  signalTree(signal: NodeJS.Signals): void;
  /** The process is gone: its group leaves the journal, and what it left behind is looked for (`now`: at once). */
  ended(now: boolean): void;
}

/**
 * Starts `plan`'s worker with `args` the way every task's worker starts: the job's environment with
 * a run token of its own, its process group recorded in the journal (so a server killed now leaves
 * nothing the next start cannot end).
 */
export function startWorker(
  plan: RunPlan,
  deps: LaunchDeps,
  where: { jobId: string; outputDir: string },
  options: { args: readonly string[]; perProcessEnv: Readonly<Record<string, string>>; stdio: StdioOptions },
): StartedWorker {
  const run = deps.descendants?.begin();
  const platform = deps.platform ?? LINUX;
  const env = workerEnv(plan, run?.env, { ...where, allowedRoots: deps.allowedRoots }, options.perProcessEnv, platform);
  // Plain child_process, not execa: at thousands of tasks execa's per-process promises, streams
  // and option copies were most of what the server allocated, and lifted its peak memory. What
  // execa's cross-spawn adds on Windows (batch files through cmd.exe, quoted) is the platform's
  // commandLine; PATHEXT and `#!` lines were resolved once for the job (catalog.ts).
  const command = platform.commandLine(plan.launch.file, [...plan.launch.prefixArgs, ...options.args]);
  const spawnOptions = workerSpawnOptions(plan, env, options.stdio, platform);
  if (command.windowsVerbatimArguments) spawnOptions.windowsVerbatimArguments = true;
  const subprocess = spawnProcess(command.file, command.args, spawnOptions);
  let startError: NodeJS.ErrnoException | undefined;
  subprocess.once('error', (error: NodeJS.ErrnoException) => {
    startError ??= error;
  });
  const pid = subprocess.pid;
  return {
    subprocess,
    pid,
    get startError() {
      return startError;
    },
    ...trackGroup(pid, deps, run),
  };
}

/** A started worker's process group: recorded in the journal and its run followed until `ended`. */
function trackGroup(
  pid: number | undefined,
  deps: LaunchDeps,
  run: { ended(now: boolean): void } | undefined,
): Pick<StartedWorker, 'signalTree' | 'ended'> {
  const untrack = pid === undefined ? undefined : deps.groupRecords?.track(pid);
  let over = false;
  return {
    signalTree(signal) {
      if (pid !== undefined) deps.processes.signalTree(pid, signal);
    },
    ended(now) {
      if (over) return;
      over = true;
      untrack?.();
      run?.ended(now);
    },
  };
}

/** A cold task's process, started through the spawner: its group tracked until `ended`. */
export interface ColdWorker {
  process: SpawnedProcess;
  /** Signals its whole process group; a group already gone is fine. */
  signalTree(signal: NodeJS.Signals): void;
  /** The process is gone: its group leaves the journal, and what it left behind is looked for (`now`: at once). */
  ended(now: boolean): void;
}

/**
 * Starts a cold task's process through `spawner` (off the server's main thread where it can; see
 * spawner.ts) with the same environment, token and group journal as startWorker. Rejects with a
 * SpawnError when it could not start.
 */
export async function startColdWorker(
  plan: RunPlan,
  deps: LaunchDeps,
  spawner: Spawner,
  where: { jobId: string; outputDir: string },
  options: { args: readonly string[]; perProcessEnv: Readonly<Record<string, string>>; stdin: string | undefined },
): Promise<ColdWorker> {
  const run = deps.descendants?.begin();
  const env = workerEnv(
    plan,
    run?.env,
    { ...where, allowedRoots: deps.allowedRoots },
    options.perProcessEnv,
    deps.platform,
  );
  let started: SpawnedProcess;
  try {
    started = await spawner.start({
      file: plan.launch.file,
      args: [...plan.launch.prefixArgs, ...options.args],
      cwd: plan.cwd,
      env,
      stdin: options.stdin,
    });
  } catch (error) {
    run?.ended(true);
    throw error;
  }
  return { process: started, ...trackGroup(started.pid, deps, run) };
}

/**
 * Resolves once the process has exited and its pipes have closed, or have gone quiet (see
 * drainAfterExit): a descendant that escaped the process group and holds them open must not keep
 * the task running.
 */
export async function settleSpawned(started: SpawnedProcess): Promise<void> {
  await started.exited;
  await drainAfterExit([started.stdout, started.stderr], started.closed);
}

/**
 * Resolves once the subprocess has exited and its pipes have closed (or gone quiet, see
 * drainAfterExit), or it could not start.
 */
export function settle(subprocess: ChildProcess, exited: () => boolean): Promise<void> {
  const closed = new Promise<void>((resolve) => {
    subprocess.once('close', () => resolve());
    subprocess.once('error', () => resolve());
  });
  const drained = (): Promise<void> => drainAfterExit(subprocess.stdio, closed);
  if (exited()) return drained();
  return Promise.race([closed, new Promise<void>((resolve) => subprocess.once('exit', () => resolve()))]).then(drained);
}

/**
 * After the process exited: resolves at `closed` (every pipe at its end), or once the pipes have
 * been quiet for QUIET_MS and one more poll of them brought nothing; then our ends are destroyed.
 * What the worker wrote before it went has arrived by then (the spawn helper relays a task's
 * pipes up to its exit before reporting it; Node reads a pipe that is ready in its next poll), so
 * only what a stray that left the group writes later is lost, and a stray that holds the pipes
 * costs no wait. A stream its reader has paused (a slow disk) is waited for, up to DRAIN_MS in all.
 */
export function drainAfterExit(streams: readonly (Stream | null | undefined)[], closed: Promise<void>): Promise<void> {
  const open = streams.filter(
    (stream): stream is Readable => stream instanceof Readable && !stream.destroyed && !stream.readableEnded,
  );
  // Only streams someone reads: a 'data' listener on any other would start it flowing into nowhere.
  const read = open.filter((stream) => stream.listenerCount('data') > 0);
  let seen = 0;
  const onData = (): void => {
    seen++;
  };
  for (const stream of read) stream.on('data', onData);
  return new Promise<void>((resolve) => {
    let quiet: NodeJS.Timeout | undefined;
    let poll: NodeJS.Immediate | undefined;
    let over = false;
    const finish = (destroy: boolean): void => {
      if (over) return;
      over = true;
      clearTimeout(quiet);
      clearTimeout(cap);
      if (poll) clearImmediate(poll);
      for (const stream of read) stream.off('data', onData);
      if (destroy) for (const stream of open) stream.destroy();
      resolve();
    };
    const held = (): boolean => read.some((stream) => stream.readableFlowing === false && !stream.readableEnded);
    const arm = (): void => {
      const mark = seen;
      quiet = setTimeout(() => {
        // One more poll phase first: it reads what the kernel still holds for us.
        poll = setImmediate(() => (seen !== mark || held() ? arm() : finish(true)));
      }, QUIET_MS);
    };
    const cap = setTimeout(() => finish(true), DRAIN_MS);
    void closed.then(() => finish(false));
    arm();
  });
}

/** SPAWN_FAILED with what to check for the usual reasons. */
export function spawnFailure(launch: LaunchPlan, error: { code?: string | undefined; message: string }): TaskError {
  const file = launch.file;
  const hints: Record<string, string> = {
    ENOENT: `${file} (or the cwd) does not exist any more. Check the interpreter mapping in the config file and that the cwd still exists.`,
    EACCES: `${file} is not executable. The user can chmod +x it, or map its extension to an interpreter in the config file.`,
    E2BIG:
      'The arguments or environment are too large for one process. Pass large inputs as json (sent on stdin) instead of args or env.',
    ENOEXEC: `${file} is not a program the system can run (a script without a #! line?). Map its extension to an interpreter in the config file.`,
  };
  return {
    code: 'SPAWN_FAILED',
    message: `Could not start ${launch.display}: ${error.message.trim().split('\n').join('; ')}`,
    hint:
      hints[error.code ?? ''] ??
      'Check that the worker and its interpreter run by hand; list_workers shows the interpreter per worker.',
  };
}
