import { LINUX, type Platform, type ProcessState } from './platform/index.js';

/** `process.kill`'s shape: only the CLI hands in the real one (it is the one module that touches `process`). */
export type KillFunction = (pid: number, signal: NodeJS.Signals | 0) => void;

/** This server process, and what it may do to others: check they live, stop worker trees. */
/** Who runs jobs: lets several servers (one per client session) share a state directory safely. */
export interface Ownership {
  pid: number;
  /** Tells this process from a later one given the same pid (its start time), where known. */
  startToken?: string;
  /** With `startToken`, a process now holding that pid but started at another time is not it. */
  isAlive(pid: number, startToken?: string): boolean;
}

export interface ProcessControl extends Ownership {
  /** Signals a worker's whole tree (its process group; on Windows its process tree); 0 only checks. False when none got it. */
  signalTree(pid: number, signal: NodeJS.Signals | 0): boolean;
  /** Sends `signal` to one process; false when it is gone (or not ours to signal). */
  signalProcess(pid: number, signal: NodeJS.Signals): boolean;
  /** The start token and state of `pid` now, or undefined when it is gone (or the system will not say). */
  stateOf(pid: number): ProcessState | undefined;
  /** A start token for a worker this server has just spawned (cheap: once per task). */
  spawnToken(pid: number): string | undefined;
  /** Whether two start tokens name the same process start. */
  sameStart(a: string, b: string): boolean;
}

export interface ProcessControlOptions {
  platform?: Platform;
  /** When this server started (epoch ms): its start token where the system is not asked (macOS, Windows). */
  startedAtMs?: number;
  now?: () => number;
}

export function processControl(pid: number, kill: KillFunction, options: ProcessControlOptions = {}): ProcessControl {
  const platform = options.platform ?? LINUX;
  const now = options.now ?? Date.now;
  const startToken = platform.ownStartToken(pid, options.startedAtMs ?? now());
  const known = new Map<number, { state: ProcessState; at: number }>();
  /**
   * For isAlive only (which signals nothing): the platform's answer, reused for a while where
   * getting it runs a tool, since a dashboard asks for every job's server four times a second.
   * Liveness is checked afresh each time; "no such process" is never reused. What decides a signal
   * (stateOf) always asks afresh.
   */
  const cachedState = (target: number): ProcessState | undefined => {
    if (platform.processStateCacheMs === 0) return platform.processState(target);
    const at = now();
    const hit = known.get(target);
    if (hit && at - hit.at < platform.processStateCacheMs && runs(target)) return hit.state;
    const state = platform.processState(target);
    if (known.size >= 1024) known.clear();
    if (state) known.set(target, { state, at });
    else known.delete(target);
    return state;
  };
  const runs = (target: number): boolean => {
    try {
      kill(target, 0);
      return true;
    } catch (error) {
      // EPERM: it runs, as another user.
      return errorCode(error) === 'EPERM';
    }
  };
  return {
    pid,
    ...(startToken === undefined ? {} : { startToken }),
    isAlive(other: number, otherStart?: string): boolean {
      if (!runs(other)) return false;
      // After a reboot the pid may belong to something else: compare start times where the system tells.
      if (otherStart === undefined) return true;
      const current = cachedState(other)?.token;
      return current === undefined || platform.sameStart(current, otherStart);
    },
    signalTree: (target, signal) => target !== pid && platform.signalTree(kill, target, signal),
    signalProcess(target: number, signal: NodeJS.Signals): boolean {
      if (!(Number.isInteger(target) && target > 1) || target === pid) return false;
      try {
        kill(target, signal);
        return true;
      } catch {
        return false;
      }
    },
    stateOf: (target) => platform.processState(target),
    spawnToken: (target) => platform.spawnToken(target, now()),
    sameStart: (a, b) => platform.sameStart(a, b),
  };
}

function errorCode(error: unknown): unknown {
  return error !== null && typeof error === 'object' && 'code' in error ? error.code : undefined;
}
