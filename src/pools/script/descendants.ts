import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Logger } from '../../log.js';
import { readProcInfo } from '../../platform/proc.js';
import type { ProcessControl } from '../../processes.js';
import type { Adopter } from './spawner.js';

/**
 * Set in every worker's environment, and so inherited by everything the worker starts: a process
 * that calls `setsid` leaves the task's process group, but keeps this.
 * `<state dir key>.<server pid>.<server start>.<server instance>.<task run>`.
 */
export const RUN_TOKEN_VAR = 'MONITOR_RUN_TOKEN';
const TOKEN_NEEDLE = Buffer.from(`\0${RUN_TOKEN_VAR}=`);
/** After a task ends, its strays are looked for within this long (at once after a timeout or cancel). */
const SWEEP_DELAY_MS = 2000;
/** Processes whose environment is read per turn of the event loop (~20 µs each). */
const SCAN_BATCH = 64;

interface Token {
  stateKey: string;
  pid: number;
  start: string;
  instance: string;
  run: number;
}

function parseToken(text: string): Token | undefined {
  const [stateKey, pid, start, instance, run] = text.split('.');
  if (
    stateKey === undefined ||
    start === undefined ||
    instance === undefined ||
    !/^\d+$/.test(pid ?? '') ||
    !/^\d+$/.test(run ?? '')
  )
    return undefined;
  return { stateKey, pid: Number(pid), start, instance, run: Number(run) };
}

export interface DescendantsOptions {
  stateDir: string;
  processes: ProcessControl;
  log: Logger;
  /** Where the process table is (the platform's /proc; tests may point elsewhere); without it nothing is tracked. */
  procDir: string | undefined;
  /** The process that adopts the tasks' orphans, if one runs now (the spawn helper; see spawner.ts). */
  adopter?: () => Adopter | undefined;
}

/**
 * Ends what a task's worker left behind, wherever it went. A worker runs in its own process group
 * (ended with the task), but a descendant can leave the group (`setsid`, a daemon's double fork),
 * and a server killed before it could end the groups leaves them all. Every worker's environment
 * carries a token naming the state dir, the server and the task run; on Linux, /proc/<pid>/environ
 * shows it for each process, so the server finds by scanning:
 *  - after a task ends (at once after a timeout or cancel, else within SWEEP_DELAY_MS), the
 *    processes of its run, and ends them;
 *  - at start, the processes of servers on this state dir that are gone (however they died, and
 *    whether or not they recorded anything), and ends them;
 *  - at shutdown, every process of its own.
 * A descendant that clears its environment (or runs setuid: its environment is not readable) and
 * leaves the group has no token; for cold tasks started through the spawn helper it is still found,
 * by its parent: the helper adopts its tasks' orphans (a child subreaper), so each sweep hands it
 * the processes whose parent it is, and it ends those that started before every task still running
 * (python/spawn_helper.py). What escapes both: such a descendant of a warm worker or of a task
 * started without the helper. Without /proc (macOS, Windows) only process groups work.
 */
export class Descendants {
  private readonly options: DescendantsOptions;
  private readonly procDir: string | undefined;
  private readonly stateKey: string;
  private readonly prefix: string;
  private readonly live = new Set<number>();
  private nextRun = 1;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private again = false;
  private closed = false;
  readonly enabled: boolean;

  constructor(options: DescendantsOptions) {
    this.options = options;
    this.procDir = options.procDir;
    const { processes } = options;
    this.enabled =
      this.procDir !== undefined &&
      processes.startToken !== undefined &&
      readProcInfo(processes.pid, this.procDir) !== undefined;
    this.stateKey = createHash('sha256').update(options.stateDir).digest('hex').slice(0, 12);
    // Several servers may share a process (tests, embedding): each sweeps only its own runs.
    this.prefix = `${this.stateKey}.${processes.pid}.${processes.startToken ?? '0'}.${randomBytes(6).toString('hex')}.`;
  }

  /**
   * A token for one task run, to put in its worker's environment before it starts; `ended` says
   * the run is over (`now`: look for its strays at once, e.g. after a timeout or cancel).
   */
  begin(): { env: Record<string, string>; ended(now: boolean): void } {
    const run = this.nextRun++;
    this.live.add(run);
    return {
      env: { [RUN_TOKEN_VAR]: `${this.prefix}${run}` },
      ended: (now) => {
        if (!this.live.delete(run)) return;
        this.scheduleSweep(now ? 0 : SWEEP_DELAY_MS);
      },
    };
  }

  /** At start: ends the processes that servers on this state dir which are gone left running. */
  async recover(): Promise<number> {
    if (!this.enabled) return 0;
    const { processes } = this.options;
    const stray = await this.scan((token) => {
      if (token.stateKey !== this.stateKey) return false;
      // Our own pid with another start time: an earlier server that had it.
      if (token.pid === processes.pid) return token.start !== processes.startToken;
      return !processes.isAlive(token.pid, token.start);
    });
    if (stray.length > 0)
      this.options.log.info(
        `stopped ${stray.length} process(es) left running by a monitor-mcp server that is gone: ${stray.join(', ')}`,
      );
    return stray.length;
  }

  /** Ends every process of this server's task runs that have ended (all of them when closing). */
  sweep(): Promise<void> {
    if (this.sweeping) {
      this.again = true;
      return this.sweeping;
    }
    const run = async (): Promise<void> => {
      do {
        this.again = false;
        const adopter = this.options.adopter?.();
        const adopted: Array<readonly [number, string]> = [];
        await this.scan(
          (_token, raw) =>
            raw.startsWith(this.prefix) && (this.closed || !this.live.has(Number(raw.slice(this.prefix.length)))),
          adopter && { pid: adopter.pid, found: adopted },
        );
        if (adopter && adopted.length > 0) adopter.sweep(adopted);
      } while (this.again);
    };
    this.sweeping = run()
      .catch((error: unknown) =>
        this.options.log.warn(`could not look for processes left by finished tasks: ${String(error)}`),
      )
      .finally(() => {
        this.sweeping = undefined;
      });
    return this.sweeping;
  }

  /** After the engine has stopped every task: nothing of this server's runs may outlive it. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.sweepTimer);
    if (this.enabled) await this.sweep();
  }

  private scheduleSweep(delayMs: number): void {
    if (!this.enabled || this.closed) return;
    if (this.sweepTimer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.sweepTimer);
    }
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      void this.sweep();
    }, delayMs);
    // Pending sweeps must not keep a server that is done from exiting (close() sweeps anyway).
    this.sweepTimer.unref();
  }

  /**
   * SIGKILLs every process whose token `matches`, and returns their pids. Reads each environment
   * between two reads of the start time, so a pid given to a new process meanwhile is left alone.
   * Synchronous reads in small batches: /proc is generated in memory, and a batch holds the event
   * loop far less than a thread pool busy with thousands of reads would hold the server's file I/O.
   */
  private async scan(
    matches: (token: Token, raw: string) => boolean,
    children?: { pid: number; found: Array<readonly [number, string]> },
  ): Promise<number[]> {
    const { processes } = this.options;
    const procDir = this.procDir;
    if (procDir === undefined) return [];
    let names: string[];
    try {
      names = readdirSync(procDir);
    } catch {
      return [];
    }
    const killed: number[] = [];
    for (let at = 0; at < names.length; at += SCAN_BATCH) {
      if (at > 0) await yieldToLoop();
      for (const name of names.slice(at, at + SCAN_BATCH)) {
        const pid = Number(name);
        if (!Number.isInteger(pid) || pid <= 1 || pid === processes.pid) continue;
        const before = readProcInfo(pid, procDir);
        if (!before || before.zombie) continue;
        const raw = tokenOf(`${procDir}/${name}/environ`);
        const token = raw === undefined ? undefined : parseToken(raw);
        if (!token || raw === undefined || !matches(token, raw)) {
          // Whether it is a stray is the adopter's to decide: it knows which of its children are tasks.
          if (children && before.ppid === children.pid) children.found.push([pid, before.startTime]);
          continue;
        }
        if (readProcInfo(pid, procDir)?.startTime !== before.startTime) continue;
        if (processes.signalProcess(pid, 'SIGKILL')) killed.push(pid);
      }
    }
    return killed;
  }
}

const environBuffer = Buffer.alloc(64 * 1024);

/** The run token in a process's initial environment, if it has one (and we may read it). */
function tokenOf(file: string): string | undefined {
  let length: number;
  try {
    const fd = openSync(file, 'r');
    try {
      // Environments past 64 KiB are cut here: the token is looked for in what fits (ours is
      // usually early: the server puts it after the variables it was given).
      environBuffer[0] = 0;
      length = readSync(fd, environBuffer, 1, environBuffer.length - 1, 0) + 1;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const text = environBuffer.subarray(0, length);
  const at = text.indexOf(TOKEN_NEEDLE);
  if (at < 0) return undefined;
  const start = at + TOKEN_NEEDLE.length;
  const end = text.indexOf(0, start);
  return text.toString('latin1', start, end < 0 ? length : end);
}
