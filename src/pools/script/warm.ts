import { LINUX } from '../../platform/index.js';
import { readProcRss } from '../../platform/proc.js';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { TaskContext, TaskResult } from '../../engine/types.js';
import { MonitorError, type TaskError, toTaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { ScriptError } from './errors.js';
import { type LaunchDeps, type RunPlan, settle, spawnFailure, startWorker, type StartedWorker } from './launch.js';
import { decodeUtf8, OutputCapture } from './output.js';
import {
  lastLineOf,
  type OutputAllowance,
  PREVIEW_BYTES,
  type ProcessExit,
  STDERR_TAIL_BYTES,
  taskResult,
  type ValueLimits,
} from './task-value.js';

/**
 * Warm workers: long-lived worker processes that serve a job's tasks one at a time, so a task
 * costs a line each way instead of an interpreter start (~70 ms of CPU for Python, for ~1 ms of
 * work on a file). The protocol (v1, documented in workers/README.md):
 *
 * - A worker declares `# monitor: warm: yes`. It is started exactly as a cold task (interpreter,
 *   flags, cwd, env, run token, process group) but with no task args, stdin /dev/null,
 *   MONITOR_WARM=1, fd 3 for requests (server → worker) and fd 4 for replies (worker → server).
 * - Request, one JSON line: `{"id": 7, "args": [...], "env": {"MONITOR_TASK_INDEX": "7",
 *   "MONITOR_ATTEMPT": "1", "MONITOR_STDIN_FORMAT": "none"}}` plus at most one of `"stdin"` (text)
 *   or `"json"` (a value): a cold task's input.
 * - Reply, one JSON line: `{"id": 7, "exit_code": 0, "result": <JSON>}` or `... "output": "<text>"}`.
 *   exit_code ≠ 0 fails the task like a cold worker's exit code; `output` counts as a cold
 *   worker's stdout, `result` as the JSON it would print.
 * - What the worker writes on fd 1 and 2 during a task is that task's log (its stderr capture);
 *   it flushes them before replying. Output while idle goes to the next task's log.
 * - It exits at EOF on fd 3. A reply that is not JSON, has another id or is too long fails the task
 *   with WORKER_PROTOCOL and the process is killed.
 */

/** A warm process without a task for this long ends: a fallback, a job's end ends its processes at once. */
const IDLE_MS = 5000;
/** What a warm process writes while idle is kept for its next task's log up to this many bytes. */
const STRAY_LIMIT = 64 * 1024;
/** After a reply, turns of the event loop that may still bring the task's log (fd 1 and 2 are other pipes than fd 4). */
const MAX_LOG_TURNS = 64;
/** Characters of a bad reply quoted in the error. */
const PREVIEW_CHARS = 200;

const PROTOCOL_HINT =
  'A warm worker writes exactly one JSON line per request on fd 4, {"id": <the request\'s id>, "exit_code": 0, "result": ...} (or "output": "text"), and its logs on stdout/stderr. Fix the worker; meanwhile run_script_batch with warm: false runs it cold.';

/** One task's input, as the pool checked it. */
export interface WarmTaskInput {
  args?: string[] | undefined;
  stdin?: string | undefined;
  json?: unknown;
}

export interface WarmWorkersOptions extends ValueLimits {
  launch: LaunchDeps;
  /** Worker processes of all jobs at once, warm (busy or idle) and cold: the pool's concurrency. */
  capacity: number;
  outputCapBytes: number;
  /** A process is replaced after this many tasks (script.warmMaxTasks). */
  maxTasks: number;
  /** ...or once its RSS is over this after a task (script.warmMaxRssMB; Linux). */
  maxRssBytes: number;
  /** A process with no task for this long ends (default IDLE_MS). */
  idleMs?: number;
  log: Logger;
  /** Resolves on a turn of the event loop of its own for a process start (see ScriptPool.turnToSpawn). */
  turnToSpawn(): Promise<void>;
  /** Cold tasks' processes running now: they count against `capacity` too. */
  coldProcesses(): number;
}

interface WarmReply {
  exit_code: number;
  result?: unknown;
  output?: string;
}

/** How one request to a process ended. */
type Outcome =
  | { kind: 'reply'; reply: WarmReply }
  | { kind: 'protocol'; problem: string }
  /** The process ended without replying. */
  | { kind: 'exited' }
  | { kind: 'stopped'; reason: 'timeout' | 'cancel' };

interface WarmRequest {
  id: number;
  args: string[];
  env: Record<string, string>;
  stdin?: string;
  json?: unknown;
}

/** The idle warm processes of one job run (its tasks of one attempt plan), longest idle first. */
interface WarmGroup {
  jobId: string;
  idle: WarmProcess[];
}

/** Long-lived worker processes per job, shared by its tasks one at a time (see the protocol above). */
export class WarmWorkers {
  private readonly options: WarmWorkersOptions;
  private readonly groups = new Map<string, WarmGroup>();
  /** Busy and idle processes: what counts against the capacity (processes ending do not). */
  private readonly counted = new Set<WarmProcess>();
  /** Every process not yet gone, ending ones included: close() waits for them. */
  private readonly alive = new Set<WarmProcess>();
  /** Processes being started (waiting for their turn). */
  private starting = 0;
  /** Numbers the processes in task values (`warm.process`). */
  private started = 0;
  private closed = false;

  constructor(options: WarmWorkersOptions) {
    this.options = options;
  }

  /** Warm processes that count against the capacity now: busy, idle and starting. */
  get processCount(): number {
    return this.counted.size + this.starting;
  }

  /**
   * Runs one task on a warm process of its group (`key`: the job and its attempt plan): an idle one,
   * else a new one. A process that dies mid-task has the task run once more on a fresh process.
   */
  async run(
    key: string,
    plan: RunPlan,
    input: WarmTaskInput,
    task: TaskContext,
    allowance: OutputAllowance,
  ): Promise<TaskResult> {
    const { outputCapBytes } = this.options;
    const log = new OutputCapture(
      path.join(task.outputDir, `${task.index}.stderr`),
      outputCapBytes,
      STDERR_TAIL_BYTES,
      allowance,
    );
    const deadline = Date.now() + plan.timeoutMs;
    let crash: { exit: ProcessExit | undefined; process: number } | undefined;
    for (;;) {
      const acquired = await this.acquire(key, plan, task, crash !== undefined);
      if ('error' in acquired) return { ok: false, error: acquired.error };
      const worker = acquired.process;
      const outcome = await worker.serve(requestFor(task, input), log, Math.max(0, deadline - Date.now()), task.signal);
      const served = { process: worker.number, task: worker.tasksServed };
      this.release(worker, outcome);
      if (outcome.kind === 'exited' && crash === undefined && !task.signal.aborted) {
        crash = { exit: worker.exit, process: worker.number };
        continue;
      }
      return this.result(plan, task, { outcome, worker, log, allowance, served, crash });
    }
  }

  /** The job's run is over: its idle processes end now (a busy one ends when idle, or with the pool). */
  jobEnded(jobId: string): void {
    for (const group of [...this.groups.values()]) {
      if (group.jobId !== jobId) continue;
      for (const worker of [...group.idle]) this.retire(worker, 'its job ended');
    }
  }

  /**
   * Before another process starts: when the processes running (cold and warm, idle ones included)
   * fill the capacity, ends idle warm processes of other groups until there is room.
   */
  makeRoom(exceptKey?: string): void {
    while (this.processCount + this.options.coldProcesses() + 1 > this.options.capacity) {
      let victim: WarmProcess | undefined;
      for (const [key, group] of this.groups) {
        if (key === exceptKey) continue;
        const oldest = group.idle[0];
        if (oldest && (!victim || oldest.idleSince < victim.idleSince)) victim = oldest;
      }
      if (!victim) return;
      this.retire(victim, 'room was needed for another task');
    }
  }

  /** Ends every process (shutdown: the engine has stopped their tasks) and waits until they are gone. */
  async close(): Promise<void> {
    this.closed = true;
    for (const worker of [...this.alive]) {
      if (worker.state === 'busy') worker.terminate();
      else if (worker.state === 'idle') this.retire(worker, 'the server is closing');
    }
    await Promise.all([...this.alive].map((worker) => worker.gone));
  }

  /** An idle process of the group (unless `fresh`), else a new one; or why none could start. */
  private async acquire(
    key: string,
    plan: RunPlan,
    task: TaskContext,
    fresh: boolean,
  ): Promise<{ process: WarmProcess } | { error: TaskError }> {
    if (this.closed) throw new MonitorError('SHUTTING_DOWN', 'The server is shutting down.');
    const group = this.groups.get(key);
    while (!fresh && group && group.idle.length > 0) {
      // Most recently idle first: its memory is warm, and the oldest are the ones to let go.
      const worker = group.idle.pop();
      if (group.idle.length === 0) this.groups.delete(key);
      if (worker?.claim()) return { process: worker };
    }
    // A retry after a crash may end an idle process of its own group: it takes none of them.
    this.makeRoom(fresh ? undefined : key);
    this.starting++;
    let worker: WarmProcess;
    try {
      await this.options.turnToSpawn();
      task.signal.throwIfAborted();
      if (this.closed) throw new MonitorError('SHUTTING_DOWN', 'The server is shutting down.');
      const started = startWorker(
        plan,
        this.options.launch,
        { jobId: task.jobId, outputDir: task.outputDir },
        {
          args: [],
          perProcessEnv: { MONITOR_WARM: '1' },
          stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
        },
      );
      worker = new WarmProcess(++this.started, key, task.jobId, started, plan, this.options, (gone) =>
        this.forget(gone),
      );
    } finally {
      this.starting--;
    }
    this.alive.add(worker);
    this.counted.add(worker);
    const startError = await worker.spawned;
    if (startError) return { error: spawnFailure(plan.launch, { code: startError.code, message: startError.message }) };
    return { process: worker };
  }

  /** After a task: the process goes back to its group's idle ones, or is replaced when it has served enough. */
  private release(worker: WarmProcess, outcome: Outcome): void {
    // Killed (timeout, cancel, protocol) or dead: it is on its way out and forgets itself when gone.
    if (outcome.kind !== 'reply' || worker.state !== 'busy') return;
    const { maxTasks, maxRssBytes } = this.options;
    if (this.closed) return this.retire(worker, 'the server is closing');
    if (worker.tasksServed >= maxTasks)
      return this.retire(worker, `it served ${worker.tasksServed} tasks (script.warmMaxTasks)`);
    const procDir = (this.options.launch.platform ?? LINUX).procDir;
    const rss = worker.pid === undefined || procDir === undefined ? undefined : readProcRss(worker.pid, procDir);
    if (rss !== undefined && rss > maxRssBytes) {
      return this.retire(worker, `its memory (RSS ${Math.round(rss / 1048576)} MB) is over script.warmMaxRssMB`);
    }
    worker.idle(this.options.idleMs ?? IDLE_MS, () => this.retire(worker, 'it was idle'));
    let group = this.groups.get(worker.key);
    if (!group) {
      group = { jobId: worker.jobId, idle: [] };
      this.groups.set(worker.key, group);
    }
    group.idle.push(worker);
  }

  /** Ends a process that is not serving a task: fd 3 closed (it exits), its group killed after the grace. */
  private retire(worker: WarmProcess, why: string): void {
    this.unlist(worker);
    this.counted.delete(worker);
    this.options.log.debug(
      `warm process ${worker.number} (${worker.plan.launch.display}, pid ${String(worker.pid)}) ends: ${why}`,
    );
    worker.end();
  }

  /** Takes it out of its group's idle ones (a group without idle processes is dropped). */
  private unlist(worker: WarmProcess): void {
    const group = this.groups.get(worker.key);
    if (!group) return;
    const at = group.idle.indexOf(worker);
    if (at !== -1) group.idle.splice(at, 1);
    if (group.idle.length === 0) this.groups.delete(worker.key);
  }

  private forget(worker: WarmProcess): void {
    this.unlist(worker);
    this.counted.delete(worker);
    this.alive.delete(worker);
  }

  private async result(
    plan: RunPlan,
    task: TaskContext,
    ran: {
      outcome: Outcome;
      worker: WarmProcess;
      log: OutputCapture;
      allowance: OutputAllowance;
      served: { process: number; task: number };
      crash: { exit: ProcessExit | undefined; process: number } | undefined;
    },
  ): Promise<TaskResult> {
    const { outcome, worker, log, allowance, crash } = ran;
    const { outputCapBytes } = this.options;
    const stdout = new OutputCapture(
      path.join(task.outputDir, `${task.index}.stdout`),
      outputCapBytes,
      PREVIEW_BYTES,
      allowance,
    );
    const extra: Record<string, unknown> = { warm: ran.served };
    const notes: string[] = [];
    if (crash) {
      extra.retried_after_crash = { exit_code: crash.exit?.code ?? null, signal: crash.exit?.signal ?? null };
      notes.push(
        `Warm process ${crash.process} ${describeExit(crash.exit)} mid-task; the task ran again on a fresh process (${ran.served.process}). stderr_tail holds the log of both runs.`,
      );
    }
    const end = { stdout, stderr: log, allowance, notes, extra };
    const name = plan.launch.display;
    switch (outcome.kind) {
      case 'reply': {
        const { reply } = outcome;
        // The bytes a cold run of the same worker would print: its output, or its result as one JSON line.
        const bytes =
          reply.output !== undefined
            ? Buffer.from(reply.output)
            : reply.result !== undefined
              ? Buffer.from(`${JSON.stringify(reply.result)}\n`)
              : undefined;
        if (bytes !== undefined && bytes.length > 0) stdout.accept(bytes);
        return taskResult(
          plan,
          { ...end, exit: { code: reply.exit_code, signal: null }, stopReason: undefined },
          this.options,
        );
      }
      case 'stopped':
        return taskResult(plan, { ...end, exit: worker.exit, stopReason: outcome.reason }, this.options);
      case 'protocol': {
        const error = new ScriptError(
          'WORKER_PROTOCOL',
          `${name} (warm process ${worker.number}) ${outcome.problem}; the process was killed and is replaced for the next task.`,
          { hint: PROTOCOL_HINT },
        );
        return taskResult(
          plan,
          { ...end, exit: undefined, stopReason: undefined, error: toTaskError(error) },
          this.options,
        );
      }
      case 'exited': {
        const result = await taskResult(plan, { ...end, exit: worker.exit, stopReason: undefined }, this.options);
        const lastLine = lastLineOf((result.value as { stderr_tail?: unknown }).stderr_tail);
        const error = new ScriptError(
          'NON_ZERO_EXIT',
          `${name}: its warm process died mid-task (${describeExit(worker.exit)})${crash ? ', on a fresh process too' : ''}${lastLine ? `: ${lastLine}` : '.'}`,
          {
            hint: 'The task makes the worker crash: the value holds its stderr_tail (full log in files.stderr when long). Fix the worker or the input (warm: false runs it cold), then resume_job with include_failed: true.',
          },
        );
        return { ...result, ok: false, error: toTaskError(error) };
      }
    }
  }
}

/** The request line's content for one task: a cold task's args, input and per-task MONITOR_* variables. */
function requestFor(task: TaskContext, input: WarmTaskInput): WarmRequest {
  const message: WarmRequest = {
    id: task.index,
    args: input.args ?? [],
    env: {
      MONITOR_TASK_INDEX: String(task.index),
      MONITOR_ATTEMPT: String(task.attempt),
      MONITOR_STDIN_FORMAT: input.stdin !== undefined ? 'text' : input.json !== undefined ? 'json' : 'none',
    },
  };
  if (input.stdin !== undefined) message.stdin = input.stdin;
  else if (input.json !== undefined) message.json = input.json;
  return message;
}

function describeExit(exit: ProcessExit | undefined): string {
  if (exit?.signal) return `was killed by ${exit.signal}`;
  return exit?.code === undefined || exit.code === null ? 'ended' : `exited with code ${exit.code}`;
}

/** `line` quoted for an error message: its start, escaped (JSON string rules), whatever its bytes. */
function preview(line: Buffer | string): string {
  const text = typeof line === 'string' ? line : decodeUtf8(line.subarray(0, PREVIEW_CHARS * 4)).text;
  const shown = JSON.stringify(text.slice(0, PREVIEW_CHARS));
  return text.length > PREVIEW_CHARS ? `${shown}…` : shown;
}

/** What is wrong with a reply line to request `id`, or the reply. */
function parseReply(line: Buffer, id: number): { reply: WarmReply } | { problem: string } {
  const { text, lossy } = decodeUtf8(line);
  if (lossy) return { problem: `sent a reply that is not valid UTF-8: ${preview(text)}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: `sent a reply that is not JSON: ${preview(text)}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    return { problem: `sent a reply that is not a JSON object: ${preview(text)}` };
  const reply = parsed as Record<string, unknown>;
  if (reply.id !== id)
    return { problem: `replied with id ${JSON.stringify(reply.id) ?? 'missing'} to request ${id}: ${preview(text)}` };
  const exitCode = reply.exit_code;
  if (typeof exitCode !== 'number' || !Number.isInteger(exitCode))
    return { problem: `sent a reply without an integer exit_code: ${preview(text)}` };
  if (reply.output !== undefined && typeof reply.output !== 'string')
    return { problem: `sent a reply whose output is not a string: ${preview(text)}` };
  if (reply.output !== undefined && reply.result !== undefined)
    return { problem: `sent a reply with both result and output: ${preview(text)}` };
  const out: WarmReply = { exit_code: exitCode };
  if (reply.result !== undefined) out.result = reply.result;
  if (typeof reply.output === 'string') out.output = reply.output;
  return { reply: out };
}

/** One warm worker process: its pipes, the task it serves, and its way out. */
class WarmProcess {
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
  private readonly options: WarmWorkersOptions;
  /** The current task's log; undefined while idle. */
  private sink: OutputCapture | undefined;
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
    options: WarmWorkersOptions,
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
  async serve(message: WarmRequest, log: OutputCapture, timeoutMs: number, signal: AbortSignal): Promise<Outcome> {
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

  private flushStray(log: OutputCapture): void {
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
