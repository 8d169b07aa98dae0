import { type FileHandle, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../log.js';
import type { ProcessControl } from '../../processes.js';
import { readStateFile } from '../../store/safe-read.js';

/** How often recover() looks whether stopped workers are gone during the kill grace. */
const POLL_MS = 50;
/** A server's journal is rewritten with only its running groups once it has grown this large. */
const COMPACT_BYTES = 64 * 1024;
/** Ends of groups are written with the next start, or after this long: a lost end line is harmless. */
const LAZY_FLUSH_MS = 1000;
/** `<server pid>.groups`: one journal per server process (`.tmp` while being compacted). */
/** A journal holds a line per process group a server started (compacted as it grows): far under this. */
const JOURNAL_READ_CAP = 16 * 1024 * 1024;
const JOURNAL_NAME = /^(\d+)\.groups(\.tmp)?$/;

/** `@ <start token>`: the first line of a journal, which tells its server from a later process with its pid. */
const OWNER_LINE = /^@ (t?\d+)$/m;
/** A start token: clock ticks on Linux, `t<epoch seconds>` elsewhere (see platform/). */
const START_TOKEN = /^t?\d+$/;

/** The groups a journal says were running when it was last written: `+ pgid start` minus `- pgid`. */
export function parseJournal(text: string): Map<number, string> {
  const running = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [sign, pgidText, startTime] = line.split(' ');
    const pgid = Number(pgidText);
    if (!Number.isInteger(pgid) || pgid <= 1) continue;
    if (sign === '+' && startTime !== undefined && START_TOKEN.test(startTime)) running.set(pgid, startTime);
    else if (sign === '-') running.delete(pgid);
  }
  return running;
}

export interface GroupRecordsOptions {
  /** A folder of the state dir, shared by every server using that state dir. */
  dir: string;
  processes: ProcessControl;
  killGraceMs: number;
  log: Logger;
}

/**
 * Which worker process groups this server runs, kept on disk so that the next server can end the
 * groups a crashed or SIGKILLed server left running. One append-only journal per server
 * (`<pid>.groups`: `+ pgid start` at spawn, `- pgid` at exit) through one open file, lines that
 * come together written at once: a file created and removed per task cost ~0.2 ms of server CPU
 * per task, this ~0.08 ms with the /proc read (a no-op bash task costs the server ~0.8 ms).
 * A pid the system has since given to another process must never be signalled: each group is
 * recorded with its start (exact from /proc on Linux; elsewhere the spawn time, checked against
 * `ps`/PowerShell within seconds). On Windows a "group" is the worker's process tree.
 */
export class GroupRecords {
  private readonly options: GroupRecordsOptions;
  private readonly file: string;
  private readonly header: string;
  /** What this server runs now, pgid → start time: the content of a compacted journal. */
  private readonly running = new Map<number, string>();
  /** Lines not yet written; drain() writes them, one write at a time. */
  private pending = '';
  private draining = false;
  private lazyFlush: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private handle: FileHandle | undefined;
  private bytes = 0;
  /** Set when the journal cannot be written: recording stops (one warning). */
  private off = false;

  constructor(options: GroupRecordsOptions) {
    this.options = options;
    this.file = path.join(options.dir, `${options.processes.pid}.groups`);
    const start = options.processes.startToken;
    this.header = start === undefined ? '' : `@ ${start}\n`;
  }

  /** Records the running group `pgid`; the returned function records its end. */
  track(pgid: number): () => void {
    if (this.off) return () => undefined;
    const startTime = this.options.processes.spawnToken(pgid);
    // Already gone (its exit handling ends the group), or no start to tell it apart later.
    if (startTime === undefined) return () => undefined;
    this.running.set(pgid, startTime);
    // At once: a server killed from now on leaves this group running.
    this.append(`+ ${pgid} ${startTime}\n`, true);
    return () => {
      // Not urgent: an end line lost in a crash leaves a record of a group that is gone (or whose
      // pid now has another start time), which the next start skips. Most ride along with the
      // next task's start line.
      if (this.running.delete(pgid)) this.append(`- ${pgid}\n`, false);
    };
  }

  /** Resolves once every line recorded so far is on disk (or recording stopped). */
  async flushed(): Promise<void> {
    this.startDrain();
    while (this.draining) await this.writing;
  }

  private append(line: string, urgent: boolean): void {
    if (this.off) return;
    this.pending += line;
    if (urgent) this.startDrain();
    else if (!this.draining) {
      this.lazyFlush ??= setTimeout(() => this.startDrain(), LAZY_FLUSH_MS);
      // Pending end lines must not keep a server that is done from exiting.
      this.lazyFlush.unref();
    }
  }

  private startDrain(): void {
    clearTimeout(this.lazyFlush);
    this.lazyFlush = undefined;
    if (this.draining || this.pending === '' || this.off) return;
    this.draining = true;
    this.writing = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending !== '' && !this.off) {
        let chunk = this.pending;
        this.pending = '';
        if (this.handle === undefined) {
          await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
          // 'w': an older journal of this pid is a dead server's, which recover() has already handled.
          this.handle = await open(this.file, 'w', 0o600);
          chunk = this.header + chunk;
        }
        if (this.bytes + chunk.length > COMPACT_BYTES) await this.compact();
        else {
          await this.handle.write(chunk);
          this.bytes += chunk.length;
        }
      }
    } catch (error) {
      this.off = true;
      this.pending = '';
      this.options.log.warn(
        `cannot record worker process groups in ${this.file} (${messageOf(error)}); workers left running if this server is killed will not be stopped by the next start`,
      );
    } finally {
      this.draining = false;
    }
  }

  /**
   * Writes what is pending and closes the journal; removes it when no group runs any more (after a
   * clean shutdown nothing is left for the next start to do).
   */
  async close(): Promise<void> {
    await this.flushed();
    const handle = this.handle;
    this.handle = undefined;
    this.off = true;
    if (handle === undefined) return;
    await handle.close().catch(() => undefined);
    if (this.running.size === 0) await unlink(this.file).catch(() => undefined);
  }

  /** Replaces the journal with the groups running now (they include the pending lines' effect). */
  private async compact(): Promise<void> {
    const text = this.header + [...this.running].map(([pgid, startTime]) => `+ ${pgid} ${startTime}\n`).join('');
    const temporary = `${this.file}.tmp`;
    const next = await open(temporary, 'w', 0o600);
    try {
      await next.write(text);
      await rename(temporary, this.file);
    } catch (error) {
      await next.close().catch(() => undefined);
      throw error;
    }
    await this.handle?.close().catch(() => undefined);
    this.handle = next;
    this.bytes = text.length;
  }

  /**
   * Ends the groups recorded by servers that are no longer running: SIGTERM, then SIGKILL after the
   * kill grace. Journals of live servers (other sessions on this state dir) are left alone. Call it
   * before this server starts tasks. Never throws: a failure only leaves journals for the next start.
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
      const stopping: Array<{ pgid: number; startTime: string }> = [];
      const finished: string[] = [];
      for (const name of names) {
        const match = JOURNAL_NAME.exec(name);
        if (!match) continue;
        const file = path.join(dir, name);
        // A `.tmp` is a compaction cut short: the journal it was to replace is still whole.
        // Read as state, not trusted: a FIFO or symlink planted here must not block or redirect the start.
        const text = match[2] === undefined ? await readStateFile(file, JOURNAL_READ_CAP).catch(() => '') : '';
        const owner = Number(match[1]);
        // Our own pid on a journal means a dead server had it before: this one has started nothing yet.
        if (owner !== processes.pid && processes.isAlive(owner, OWNER_LINE.exec(text)?.[1])) continue;
        finished.push(file);
        for (const [pgid, startTime] of parseJournal(text)) {
          // A leader with another start time means the pid was given to a new process: the system
          // reuses a pid only once no process is left in the group it led, so ours is gone. A
          // leader that is gone (or a zombie) may have left members: the group id still names them.
          const leader = processes.stateOf(pgid);
          if (
            (leader === undefined || processes.sameStart(leader.token, startTime)) &&
            processes.signalTree(pgid, 'SIGTERM')
          ) {
            stopping.push({ pgid, startTime });
          }
        }
      }
      if (stopping.length > 0) {
        log.info(
          `stopping ${stopping.length} worker process group(s) left running by a server that did not exit cleanly: ${stopping.map((g) => g.pgid).join(', ')}`,
        );
        const deadline = Date.now() + this.options.killGraceMs;
        const leaderRuns = (group: { pgid: number; startTime: string }): boolean => {
          const leader = processes.stateOf(group.pgid);
          return leader !== undefined && processes.sameStart(leader.token, group.startTime) && !leader.zombie;
        };
        while (Date.now() < deadline && stopping.some(leaderRuns)) await sleep(POLL_MS);
        for (const group of stopping) {
          const leader = processes.stateOf(group.pgid);
          // SIGKILL also ends members that ignored SIGTERM, unless the pid now leads someone else's group.
          if (leader === undefined || processes.sameStart(leader.token, group.startTime))
            processes.signalTree(group.pgid, 'SIGKILL');
        }
      }
      for (const file of finished) await unlink(file).catch(() => undefined);
    } catch (error) {
      log.warn(`could not stop the workers of earlier servers (journals in ${dir}): ${messageOf(error)}`);
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
