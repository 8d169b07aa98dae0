import type { Ownership } from './engine/engine.js';
import { readProcInfo } from './pools/script/orphans.js';

/** `process.kill`'s shape: only the CLI hands in the real one (it is the one module that touches `process`). */
export type KillFunction = (pid: number, signal: NodeJS.Signals | 0) => void;

/** This server process, and what it may do to others: check they live, signal process groups. */
export interface ProcessControl extends Ownership {
  /** Sends `signal` to every process in group `pgid` (0 only checks); false when none got it. */
  signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean;
}

export function processControl(pid: number, kill: KillFunction): ProcessControl {
  const startToken = readProcInfo(pid)?.startTime;
  return {
    pid,
    ...(startToken === undefined ? {} : { startToken }),
    isAlive(other: number, otherStart?: string): boolean {
      try {
        kill(other, 0);
      } catch (error) {
        // EPERM: it runs, as another user.
        if (errorCode(error) !== 'EPERM') return false;
      }
      // After a reboot the pid may belong to something else: compare start times where /proc tells.
      if (otherStart === undefined) return true;
      const now = readProcInfo(other)?.startTime;
      return now === undefined || now === otherStart;
    },
    signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
      // -0 and -1 would address this server's own group and every process there is.
      if (!(Number.isInteger(pgid) && pgid > 1)) return false;
      try {
        kill(-pgid, signal);
        return true;
      } catch {
        // ESRCH: nothing left in the group (EPERM: not ours to signal).
        return false;
      }
    },
  };
}

function errorCode(error: unknown): unknown {
  return error !== null && typeof error === 'object' && 'code' in error ? error.code : undefined;
}
