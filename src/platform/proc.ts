import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

/** One /proc/<pid>/stat line (~300 bytes; the command name in it is at most 16). */
const statBuffer = Buffer.alloc(1024);

/** A process as Linux's /proc shows it: its start time tells it from a later process given the same pid. */
export interface ProcInfo {
  /** Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start. */
  startTime: string;
  zombie: boolean;
  /** Field 4: its parent's pid (a subreaper's child once its own parent died). */
  ppid: number;
}

/**
 * What /proc/<pid>/stat says of `pid`; undefined when there is no such process (or no /proc).
 * Synchronous on purpose: /proc is generated in memory and never waits on a disk. One read into
 * a buffer: the kernel builds the line anew for every read call, and for a process that has just
 * started that costs ~30 µs, so readFileSync's read-until-EOF doubled it (async: ~4x).
 */
export function readProcInfo(pid: number, procDir = '/proc'): ProcInfo | undefined {
  let text: string;
  try {
    const fd = openSync(`${procDir}/${pid}/stat`, 'r');
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
  const ppid = Number(fields[4 - 3]);
  const startTime = fields[22 - 3];
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
  return { startTime, zombie: state === 'Z', ppid };
}

/** A process's resident memory from /proc/<pid>/status, in bytes (a cheap read of a generated file). */
export function readProcRss(pid: number, procDir = '/proc'): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`${procDir}/${pid}/status`, 'latin1'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
