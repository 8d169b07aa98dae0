import { closeSync, openSync, readSync } from 'node:fs';
import type { Ownership } from './engine/types.js';

/** `process.kill`'s shape: only the CLI hands in the real one (it is the one module that touches `process`). */
export type KillFunction = (pid: number, signal: NodeJS.Signals | 0) => void;

/** This server process, and what it may do to others: check they live, signal process groups. */
export interface ProcessControl extends Ownership {
  /** Sends `signal` to every process in group `pgid` (0 only checks); false when none got it. */
  signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean;
  /** Sends `signal` to one process; false when it is gone (or not ours to signal). */
  signalProcess(pid: number, signal: NodeJS.Signals): boolean;
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
    signalProcess(target: number, signal: NodeJS.Signals): boolean {
      if (!(Number.isInteger(target) && target > 1) || target === pid) return false;
      try {
        kill(target, signal);
        return true;
      } catch {
        return false;
      }
    },
  };
}

function errorCode(error: unknown): unknown {
  return error !== null && typeof error === 'object' && 'code' in error ? error.code : undefined;
}

/** One /proc/<pid>/stat line (~300 bytes; the command name in it is at most 16). */
const statBuffer = Buffer.alloc(1024);

/** A process as /proc shows it: its start time tells it from a later process given the same pid. */
export interface ProcInfo {
  /** Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start. */
  startTime: string;
  zombie: boolean;
}

/**
 * What /proc/<pid>/stat says of `pid`; undefined when there is no such process (or no /proc).
 * Synchronous on purpose: /proc is generated in memory and never waits on a disk. One read into
 * a buffer: the kernel builds the line anew for every read call, and for a process that has just
 * started that costs ~30 µs, so readFileSync's read-until-EOF doubled it (async: ~4x).
 */
export function readProcInfo(pid: number): ProcInfo | undefined {
  let text: string;
  try {
    const fd = openSync(`/proc/${pid}/stat`, 'r');
    try {
      text = statBuffer.toString('latin1', 0, readSync(fd, statBuffer, 0, statBuffer.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  // Field 2 (the command name) is in parentheses and may itself hold spaces and ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const startTime = fields[22 - 3];
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
  return { startTime, zombie: state === 'Z' };
}
