import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../log.js';
import { type RunPlan, settle, type StartedWorker } from './launch.js';
import type { ProcessExit } from './task-value.js';
import { parseReply, PIPE_HINT, preview, requestId, type ServeOutcome, type WarmRequest } from './warm-protocol.js';

/** What a warm process writes while idle is kept for its next task's log up to this many bytes. */
const STRAY_LIMIT = 64 * 1024;
/** After a reply, turns of the event loop that may still bring the task's log (fd 1 and 2 are other pipes than fd 4). */
const MAX_LOG_TURNS = 64;
/**
 * A protocol pipe (fd 3 or 4) closed while the process runs: this long for its exit to follow (a
 * crash closes its pipes just before it ends, and is retried as one), else it broke the protocol.
 */
const PIPE_GRACE_MS = 500;
type Pipe = 3 | 4;
const PIPE_PROBLEM: Record<Pipe, string> = {
  3: 'closed its request pipe (fd 3) while it kept running',
  4: 'closed its reply pipe (fd 4) while it kept running: no reply can come',
};
/** Errors on fd 3 that prove the request written was never read whole: the worker closed it first (EPIPE), or with it unread (ECONNRESET). */
const UNREAD_CODES = new Set(['EPIPE', 'ECONNRESET', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED']);
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

/** What a warm process tells its pool. */
export interface WarmProcessEvents {
  /** It has exited and its pipes have closed (or were given up on). */
  gone(process: WarmProcess): void;
  /** It broke a protocol pipe and keeps running while no request waits on it: the pool ends it. */
  broken(process: WarmProcess, problem: string): void;
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
  /** The id of the last request sent: the next one differs. */
  private lastId: number | undefined;
  /** Set once fd 3 or fd 4 closed while the process runs: it takes no more requests. */
  private pipeProblem: string | undefined;
  /** ...and the grace for its exit is over: it is killed once no request waits on it. */
  private pipeBroken = false;
  /** A grace per pipe closed, for the process's exit to follow. */
  private readonly pipeTimers = new Map<Pipe, NodeJS.Timeout>();
  /** The current request was written to fd 3. */
  private sent = false;
  private readonly events: WarmProcessEvents;
  private waiter: ((outcome: ServeOutcome) => void) | undefined;
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
    events: WarmProcessEvents,
  ) {
    this.worker = worker;
    this.options = options;
    this.events = events;
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
    this.watchPipe(stdio[3], 3);
    this.watchPipe(stdio[4], 4);
    subprocess.once('exit', (code, signal) => {
      this.exit = { code, signal };
      clearTimeout(this.killTimer);
      clearTimeout(this.idleTimer);
      for (const timer of this.pipeTimers.values()) clearTimeout(timer);
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
      events.gone(this);
      this.finish({ kind: 'exited' });
    });
  }

  get pid(): number | undefined {
    return this.worker.pid;
  }

  /** Can take another request: running, not ending, both protocol pipes open. */
  get usable(): boolean {
    return (
      (this.state === 'idle' || this.state === 'busy') && this.exit === undefined && this.pipeProblem === undefined
    );
  }

  /** Takes an idle process for a task; false when it has exited or broken a pipe meanwhile. */
  claim(): boolean {
    if (this.state !== 'idle' || this.exit !== undefined || this.pipeProblem !== undefined) return false;
    clearTimeout(this.idleTimer);
    this.state = 'busy';
    return true;
  }

  /** Serves one task: sends the request, collects its log, waits for the reply (or the end of the process, a timeout, a cancel). */
  async serve(message: WarmRequest, log: LogSink, timeoutMs: number, signal: AbortSignal): Promise<ServeOutcome> {
    if (this.state === 'gone') return { kind: 'exited' };
    // Broke a pipe before its first request and is being ended already.
    if (this.state === 'ending' && this.pipeProblem)
      return { kind: 'unsent', problem: this.pipeProblem, hint: PIPE_HINT };
    this.state = 'busy';
    this.sent = false;
    this.tasksServed++;
    this.sink = log;
    this.flushStray(log);
    // Unguessable, and never the last one's: a reply written before the worker read its request cannot pass.
    const id = requestId(this.lastId);
    this.lastId = id;
    this.expectedId = id;
    const outcome = new Promise<ServeOutcome>((resolve) => {
      this.waiter = resolve;
    });
    const timer = setTimeout(() => this.finish({ kind: 'stopped', reason: 'timeout' }), timeoutMs);
    const onAbort = (): void => this.finish({ kind: 'stopped', reason: 'cancel' });
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    else if (this.state === 'busy' && this.exit === undefined) this.send(id, message);
    let result: ServeOutcome;
    try {
      result = await outcome;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    if (result.kind === 'reply') {
      await this.quietLog();
      // Answered, but it closed fd 3 meanwhile (its grace is over): ended now.
      if (this.pipeBroken && this.pipeProblem && this.state === 'busy') this.events.broken(this, this.pipeProblem);
    } else if (result.kind !== 'exited') {
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

  /** The request line, its id first (a caller's own id is not sent). */
  private send(id: number, message: WarmRequest): void {
    const line: Record<string, unknown> = { id };
    for (const [name, value] of Object.entries(message)) if (name !== 'id') line[name] = value;
    this.sent = true;
    this.requests?.write(`${JSON.stringify(line)}\n`);
  }

  /** Notices the worker closing a protocol pipe: EOF on it, or an error writing a request to it. */
  private watchPipe(stream: Readable | undefined, pipe: Pipe): void {
    if (!stream) return;
    stream.once('end', () => this.onPipeClosed(pipe));
    stream.once('close', () => this.onPipeClosed(pipe));
    stream.on('error', (error: NodeJS.ErrnoException) => this.onPipeClosed(pipe, error.code));
  }

  /**
   * A pipe closed: ours to close at the end, or the process's as it exits (a crash), else the
   * worker broke it. A request it never read goes to another process at once; otherwise, once the
   * grace is over without an exit, a request waiting on fd 4 fails with WORKER_PROTOCOL, one already
   * read may still be answered, and the process is killed when no request waits on it.
   */
  private onPipeClosed(pipe: Pipe, code?: string): void {
    if (this.state === 'ending' || this.state === 'gone' || this.exit !== undefined) return;
    if (pipe === 3 && this.waiter && this.sent && code !== undefined && UNREAD_CODES.has(code)) {
      this.pipeProblem ??= `${PIPE_PROBLEM[3]} (${code})`;
      // A worker that dies at start (a failed import) also leaves the request unread: within the grace
      // its exit comes and it is a crash, with its stderr and hint; only one that lives on is 'unsent'.
      const unsent: ServeOutcome = {
        kind: 'unsent',
        problem: `did not read its request: fd 3 was closed (${code})`,
        hint: PIPE_HINT,
      };
      setTimeout(() => {
        setImmediate(() => {
          if (this.exit === undefined && this.state !== 'gone') this.finish(unsent);
        });
      }, PIPE_GRACE_MS);
      return;
    }
    if (this.pipeTimers.has(pipe)) return;
    const problem = code === undefined ? PIPE_PROBLEM[pipe] : `${PIPE_PROBLEM[pipe]} (${code})`;
    this.pipeProblem ??= problem;
    const timer = setTimeout(() => {
      // After one more poll of the loop: an exit that came while the loop was busy is seen first.
      setImmediate(() => {
        if (this.state === 'ending' || this.state === 'gone' || this.exit !== undefined) return;
        this.pipeBroken = true;
        if (!this.waiter) this.events.broken(this, this.pipeProblem ?? problem);
        else if (pipe === 4) this.finish({ kind: 'protocol', problem, hint: PIPE_HINT });
      });
    }, PIPE_GRACE_MS);
    this.pipeTimers.set(pipe, timer);
  }

  private finish(outcome: ServeOutcome): void {
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
