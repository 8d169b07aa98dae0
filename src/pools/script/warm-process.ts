import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../log.js';
import { type RunPlan, settle, type StartedWorker } from './launch.js';
import type { ProcessExit } from './task-value.js';
import { type Outcome, parseReply, preview, type WarmRequest } from './warm-protocol.js';

/** What a warm process writes while idle is kept for its next task's log up to this many bytes. */
const STRAY_LIMIT = 64 * 1024;
/** After a reply, turns of the event loop that may still bring the task's log (fd 1 and 2 are other pipes than fd 4). */
const MAX_LOG_TURNS = 64;
/** Where a request's log goes: a task's stderr capture, or a lent call's tail in memory. */
export interface LogSink {
  /** One chunk of fd 1 or 2; `source` may be paused while the sink catches up (the process resumes it after the request). */
  accept(chunk: Buffer, source?: Readable): void;
}

/** What a warm process needs from its pool. */
export interface WarmProcessOptions {
  killGraceSeconds: number;
  /** The longest reply line taken (script.maxTaskOutputBytes). */
  maxTaskOutputBytes: number;
  log: Logger;
}

/** One warm worker process: its pipes, the task it serves, and its way out. */
export class WarmProcess {
  state: 'busy' | 'idle' | 'ending' | 'gone' = 'busy';
  tasksServed = 0;
  idleSince = 0;
  exit: ProcessExit | undefined;
  /** Resolves once it started (undefined) or could not (the error). */
  readonly spawned: Promise<NodeJS.ErrnoException | undefined>;
  /** Resolves once it has exited and its pipes have closed (or were given up on). */
  readonly gone: Promise<void>;
  private readonly worker: StartedWorker;
  /** fd 3: a socket, so also readable (nothing is expected from it). */
  private readonly requests: (Readable & Writable) | undefined;
  private readonly options: WarmProcessOptions;
  /** The current task's log; undefined while idle. */
  private sink: LogSink | undefined;
  private stray: Buffer[] = [];
  private strayBytes = 0;
  private strayDropped = 0;
  /** Bytes seen on fd 1 and 2 so far: tells whether the log is still coming after a reply. */
  private logBytes = 0;
  private lineParts: Buffer[] = [];
  private lineBytes = 0;
  private replyBroken = false;
  private expectedId: number | undefined;
  private waiter: ((outcome: Outcome) => void) | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  /** Ended by the server (killed, or lingering past the grace): what it left is looked for at once. */
  private forced = false;

  constructor(
    readonly number: number,
    /** Its group: the job and attempt plan whose tasks it serves. */
    readonly key: string,
    readonly jobId: string,
    worker: StartedWorker,
    readonly plan: RunPlan,
    options: WarmProcessOptions,
    onGone: (process: WarmProcess) => void,
  ) {
    this.worker = worker;
    this.options = options;
    const { subprocess } = worker;
    const stdio = subprocess.stdio as unknown as Array<Readable & Writable>;
    this.requests = stdio[3];
    // The pipes are socket pairs: a worker that dies with a request unread leaves ECONNRESET (or
    // EPIPE) on them. Not a failure of the server's: the process's exit tells what happened.
    for (const stream of stdio) stream?.on('error', () => undefined);
    // Nothing is read from fd 3, but its end must be noticed (and a misdirected write must not block the worker).
    this.requests?.resume();
    for (const stream of [stdio[1], stdio[2]]) stream?.on('data', (chunk: Buffer) => this.onLog(chunk, stream));
    stdio[4]?.on('data', (chunk: Buffer) => this.onReplyData(chunk));
    subprocess.once('exit', (code, signal) => {
      this.exit = { code, signal };
      clearTimeout(this.killTimer);
      clearTimeout(this.idleTimer);
      // Whatever the worker left behind in its group goes with it.
      worker.signalTree('SIGKILL');
    });
    this.spawned = new Promise((resolve) => {
      subprocess.once('spawn', () => resolve(undefined));
      subprocess.once('error', (error: NodeJS.ErrnoException) => resolve(this.exit === undefined ? error : undefined));
    });
    this.gone = settle(subprocess, () => this.exit !== undefined).then(() => {
      clearTimeout(this.killTimer);
      clearTimeout(this.idleTimer);
      if (this.exit === undefined) worker.signalTree('SIGKILL');
      this.state = 'gone';
      worker.ended(this.forced || this.exit === undefined);
      onGone(this);
      this.finish({ kind: 'exited' });
    });
  }

  get pid(): number | undefined {
    return this.worker.pid;
  }

  /** Takes an idle process for a task; false when it has exited meanwhile. */
  claim(): boolean {
    if (this.state !== 'idle' || this.exit !== undefined) return false;
    clearTimeout(this.idleTimer);
    this.state = 'busy';
    return true;
  }

  /** Serves one task: sends the request, collects its log, waits for the reply (or the end of the process, a timeout, a cancel). */
  async serve(message: WarmRequest, log: LogSink, timeoutMs: number, signal: AbortSignal): Promise<Outcome> {
    if (this.state === 'gone') return { kind: 'exited' };
    this.state = 'busy';
    this.tasksServed++;
    this.sink = log;
    this.flushStray(log);
    this.expectedId = message.id;
    const outcome = new Promise<Outcome>((resolve) => {
      this.waiter = resolve;
    });
    const timer = setTimeout(() => this.finish({ kind: 'stopped', reason: 'timeout' }), timeoutMs);
    const onAbort = (): void => this.finish({ kind: 'stopped', reason: 'cancel' });
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    else if (this.state === 'busy' && this.exit === undefined) this.requests?.write(`${JSON.stringify(message)}\n`);
    let result: Outcome;
    try {
      result = await outcome;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    if (result.kind === 'reply') await this.quietLog();
    else if (result.kind !== 'exited') {
      // Timeout, cancel, or a broken protocol: the task is over only once the process is.
      this.terminate();
      await this.gone;
    }
    this.sink = undefined;
    this.expectedId = undefined;
    // A capture paused the pipes while its file caught up; the next task's capture takes over.
    this.resumeLog();
    return result;
  }

  /** Waits in the idle ones; ends itself after `idleMs` without a task. */
  idle(idleMs: number, onIdleTooLong: () => void): void {
    this.state = 'idle';
    this.idleSince = Date.now();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(onIdleTooLong, idleMs);
    this.idleTimer.unref();
  }

  /** Ends it gently: EOF on fd 3 (it exits), its group SIGKILLed if it lingers past the grace. */
  end(): void {
    if (this.state === 'ending' || this.state === 'gone') return;
    this.state = 'ending';
    clearTimeout(this.idleTimer);
    this.requests?.end();
    if (this.exit !== undefined) return;
    this.killTimer = setTimeout(() => {
      this.forced = true;
      this.worker.signalTree('SIGKILL');
    }, this.options.killGraceSeconds * 1000);
  }

  /** Ends it now (timeout, cancel, protocol error): SIGTERM to its group, SIGKILL after the grace. */
  terminate(): void {
    if (this.state === 'gone' || this.forced) return;
    this.state = 'ending';
    this.forced = true;
    clearTimeout(this.idleTimer);
    this.requests?.end();
    if (this.exit !== undefined) return;
    this.worker.signalTree('SIGTERM');
    clearTimeout(this.killTimer);
    this.killTimer = setTimeout(() => this.worker.signalTree('SIGKILL'), this.options.killGraceSeconds * 1000);
  }

  private finish(outcome: Outcome): void {
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = undefined;
    waiter(outcome);
  }

  private onLog(chunk: Buffer, source: Readable): void {
    this.logBytes += chunk.length;
    if (this.sink) return this.sink.accept(chunk, source);
    // Idle: kept (bounded) for the next task's log.
    const room = STRAY_LIMIT - this.strayBytes;
    if (room > 0) {
      const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.stray.push(kept);
      this.strayBytes += kept.length;
    }
    this.strayDropped += Math.max(0, chunk.length - Math.max(0, room));
  }

  private flushStray(log: LogSink): void {
    if (this.strayDropped > 0) {
      log.accept(
        Buffer.from(
          `[monitor-mcp: the warm process wrote ${this.strayBytes + this.strayDropped} bytes while idle; the first ${this.strayBytes} follow]\n`,
        ),
      );
    }
    for (const chunk of this.stray) log.accept(chunk);
    this.stray = [];
    this.strayBytes = 0;
    this.strayDropped = 0;
  }

  /** The reply came: what the worker wrote on fd 1 and 2 before it may still be on its way (other pipes). */
  private async quietLog(): Promise<void> {
    for (let turn = 0; turn < MAX_LOG_TURNS; turn++) {
      const seen = this.logBytes;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.logBytes === seen) return;
    }
  }

  private resumeLog(): void {
    const stdio = this.worker.subprocess.stdio;
    for (const stream of [stdio[1], stdio[2]]) if (stream && !stream.destroyed) (stream as Readable).resume();
  }

  /** Splits fd 4 into lines, never holding more than a task may output (script.maxTaskOutputBytes). */
  private onReplyData(chunk: Buffer): void {
    let start = 0;
    while (!this.replyBroken && start < chunk.length) {
      const newline = chunk.indexOf(10, start);
      const end = newline === -1 ? chunk.length : newline;
      const piece = chunk.subarray(start, end);
      if (this.lineBytes + piece.length > this.options.maxTaskOutputBytes) {
        this.replyBroken = true;
        const head = Buffer.concat([...this.lineParts, piece].slice(0, 2));
        this.lineParts = [];
        this.broken(
          `sent a reply longer than ${this.options.maxTaskOutputBytes} bytes (script.maxTaskOutputBytes): ${preview(head)}`,
        );
        return;
      }
      if (piece.length > 0) {
        this.lineParts.push(piece);
        this.lineBytes += piece.length;
      }
      if (newline === -1) return;
      start = newline + 1;
      const line = this.lineParts.length === 1 ? (this.lineParts[0] ?? Buffer.alloc(0)) : Buffer.concat(this.lineParts);
      this.lineParts = [];
      this.lineBytes = 0;
      // A blank line carries nothing: tolerated.
      if (line.toString('latin1').trim() === '') continue;
      this.onReplyLine(line);
    }
  }

  private onReplyLine(line: Buffer): void {
    const id = this.expectedId;
    if (!this.waiter || id === undefined) {
      if (this.state === 'ending' || this.state === 'gone') return;
      this.options.log.warn(
        `warm process ${this.number} (${this.plan.launch.display}) sent a reply while no request was pending: ${preview(line)}; it is killed`,
      );
      this.replyBroken = true;
      this.terminate();
      return;
    }
    const parsed = parseReply(line, id);
    if ('problem' in parsed) {
      this.replyBroken = true;
      this.broken(parsed.problem);
      return;
    }
    this.expectedId = undefined;
    this.finish({ kind: 'reply', reply: parsed.reply });
  }

  private broken(problem: string): void {
    if (this.waiter) this.finish({ kind: 'protocol', problem });
    else {
      this.options.log.warn(`warm process ${this.number} (${this.plan.launch.display}) ${problem}; it is killed`);
      this.terminate();
    }
  }
}
