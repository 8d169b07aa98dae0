import { mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../log.js';
import type { ProcessControl } from '../../processes.js';

/** How often recover() looks whether stopped workers are gone during the kill grace. */
const POLL_MS = 50;
/** `<owner server pid>-<process group id>-<group leader start time>`: the whole record is its name. */
const RECORD_NAME = /^(\d+)-(\d+)-(\d+)$/;

/** A process as /proc shows it: its start time tells it from a later process given the same pid. */
export interface ProcInfo {
  /** Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start. */
  startTime: string;
  zombie: boolean;
}

/** What /proc/<pid>/stat says of `pid`; undefined when there is no such process (or no /proc). */
export async function readProcInfo(pid: number): Promise<ProcInfo | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'latin1');
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

export interface GroupRecordsOptions {
  /** A folder of the state dir, shared by every server using that state dir. */
  dir: string;
  processes: ProcessControl;
  killGraceMs: number;
  log: Logger;
}

/**
 * Which worker process groups this server runs, kept on disk (one empty file per running task,
 * created at spawn and removed at exit) so that the next server can end the groups a crashed or
 * SIGKILLed server left running. Linux only: without /proc a group's start time cannot be checked,
 * and a pid the system has since given to another process must never be signalled.
 */
export class GroupRecords {
  private readonly options: GroupRecordsOptions;
  /** The folder exists and /proc can be read; worked out once. */
  private ready: Promise<boolean> | undefined;
  private warned = false;

  constructor(options: GroupRecordsOptions) {
    this.options = options;
  }

  /** Records the running group `pgid`; the returned function removes the record once the group has ended. */
  track(pgid: number): () => Promise<void> {
    const written = this.write(pgid);
    return async () => {
      const file = await written;
      if (file !== undefined) await unlink(file).catch(() => undefined);
    };
  }

  private async write(pgid: number): Promise<string | undefined> {
    try {
      if (!(await this.prepare())) return undefined;
      const info = await readProcInfo(pgid);
      // Already gone: its exit handling ends the group, nothing to leave behind.
      if (info === undefined) return undefined;
      const file = path.join(this.options.dir, `${this.options.processes.pid}-${pgid}-${info.startTime}`);
      await writeFile(file, '', { mode: 0o600 });
      return file;
    } catch (error) {
      if (!this.warned) {
        this.warned = true;
        this.options.log.warn(
          `cannot record worker process groups in ${this.options.dir} (${messageOf(error)}); workers left running if this server is killed will not be stopped by the next start`,
        );
      }
      return undefined;
    }
  }

  private prepare(): Promise<boolean> {
    this.ready ??= (async () => {
      try {
        await stat('/proc/self/stat');
      } catch {
        return false;
      }
      await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
      return true;
    })();
    return this.ready;
  }

  /**
   * Ends the groups recorded by servers that are no longer running: SIGTERM, then SIGKILL after the
   * kill grace. Records of live servers (other sessions on this state dir) are left alone. Call it
   * before this server starts tasks. Never throws: a failure only leaves records for the next start.
   */
  async recover(): Promise<void> {
    const { dir, processes, log } = this.options;
    try {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        return;
      }
      const stopping: Array<{ pgid: number; startTime: string; file: string }> = [];
      for (const name of names) {
        const match = RECORD_NAME.exec(name);
        if (!match) continue;
        const owner = Number(match[1]);
        const pgid = Number(match[2]);
        const startTime = match[3] ?? '';
        // Our own pid on a record means a dead server had it before: this one has started nothing yet.
        if (owner !== processes.pid && processes.isAlive(owner)) continue;
        const file = path.join(dir, name);
        // A leader with another start time means the pid was given to a new process: the system
        // reuses a pid only once no process is left in the group it led, so ours is gone. A
        // leader that is gone (or a zombie) may have left members: the group id still names them.
        const leader = await readProcInfo(pgid);
        if ((leader === undefined || leader.startTime === startTime) && processes.signalGroup(pgid, 'SIGTERM')) {
          stopping.push({ pgid, startTime, file });
        } else {
          await unlink(file).catch(() => undefined);
        }
      }
      if (stopping.length === 0) return;
      log.info(`stopping ${stopping.length} worker process group(s) left running by a server that did not exit cleanly: ${stopping.map((g) => g.pgid).join(', ')}`);

      const deadline = Date.now() + this.options.killGraceMs;
      const leaderRuns = async (group: { pgid: number; startTime: string }): Promise<boolean> => {
        const leader = await readProcInfo(group.pgid);
        return leader !== undefined && leader.startTime === group.startTime && !leader.zombie;
      };
      while (Date.now() < deadline) {
        const running = await Promise.all(stopping.map(leaderRuns));
        if (!running.includes(true)) break;
        await sleep(POLL_MS);
      }
      for (const group of stopping) {
        const leader = await readProcInfo(group.pgid);
        // SIGKILL also ends members that ignored SIGTERM, unless the pid now leads someone else's group.
        if (leader === undefined || leader.startTime === group.startTime) processes.signalGroup(group.pgid, 'SIGKILL');
        await unlink(group.file).catch(() => undefined);
      }
    } catch (error) {
      log.warn(`could not stop the workers of earlier servers (records in ${dir}): ${messageOf(error)}`);
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
