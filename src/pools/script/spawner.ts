import { type ChildProcess, spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { Readable } from 'node:stream';
import type { Logger } from '../../log.js';
import { LINUX, type Platform } from '../../platform/index.js';
import type { ProcessControl } from '../../processes.js';

/**
 * Starting one process per task without stalling the server.
 *
 * Node's child_process.spawn (libuv 1.46 in Node 20) calls fork() on the calling thread, then
 * blocks reading a pipe until the child has exec'd. fork copies the page tables of the whole
 * server (time grows with its RSS), the child then tears that copy down in exec while the server
 * waits, and afterwards every page the server writes takes a copy-on-write fault. At one
 * process per task on 2 cores that was +10–15% over `xargs -P2`. A worker thread does not help:
 * it is the same process, so the fork still copies the same page tables.
 *
 * The relay spawner hands the fork to a small long-lived helper: Python, whose subprocess module
 * uses vfork (no page tables copied) and whose address space is ~10 MB anyway. The helper starts
 * each task in a session and process group of its own, writes its stdin, reaps it, and relays its
 * stdout/stderr and exit status over one framed pipe. The server still signals the task's group
 * itself (the pid is the group id), so timeouts, cancel and the group journal work as before.
 */

/** One process to start: `file` with `args`, never through a shell. */
export interface SpawnRequest {
  file: string;
  args: readonly string[];
  cwd: string;
  /** The whole environment (nothing else is inherited). */
  env: Readonly<Record<string, string>>;
  /** Written to the process's stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string | undefined;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A started process: the leader of its own process group (pgid = pid). */
export interface SpawnedProcess {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the process has exited and was reaped; its pipes may still be open (a grandchild). */
  readonly exited: Promise<ExitStatus>;
  /** Resolves once it has exited and both streams have ended or been destroyed. */
  readonly closed: Promise<void>;
}

export interface Spawner {
  /** `relay` (through the helper) or `direct` (child_process.spawn on this thread). */
  readonly mode: 'relay' | 'direct';
  /** Resolves once the process runs (exec succeeded); rejects with a SpawnError when it could not start. */
  start(request: SpawnRequest): Promise<SpawnedProcess>;
  /** Ends the helper; process groups it still has are killed (SIGKILL). */
  close(): Promise<void>;
}

/** Why a process did not start, shaped like Node's own spawn errors (`code` ENOENT, EACCES, …). */
export class SpawnError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path: string;
  readonly spawnargs: readonly string[];

  constructor(file: string, args: readonly string[], code: string, errno: number, message?: string) {
    super(message ?? `spawn ${file} ${code}`);
    this.name = 'SpawnError';
    this.code = code;
    this.errno = errno;
    this.syscall = `spawn ${file}`;
    this.path = file;
    this.spawnargs = args;
  }
}

export interface SpawnerOptions {
  /** A Python 3 to run the helper with (the real interpreter, not a version manager's shim). */
  python: () => Promise<string>;
  log: Logger;
  /** Ends the process groups of a helper that died. */
  processes: Pick<ProcessControl, 'signalTree'>;
  /**
   * The helper's own environment (the workers' base environment, without the server's secrets);
   * each task gets exactly the environment of its request. Default: none.
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** The helper exits after this long with nothing running; the next task starts it again. */
  idleMs?: number;
  /** Where the helper pays off (Linux: elsewhere Node already uses posix_spawn, or vfork is missing) and how workers start. */
  platform: Platform;
}

/** The relay spawner where it pays (Linux), Node's own spawn elsewhere. */
export function createSpawner(options: SpawnerOptions): Spawner {
  return options.platform.spawnHelper ? new RelaySpawner(options) : new DirectSpawner(options.platform);
}

/** child_process.spawn on the calling thread: the fallback, and the reference the relay must match. */
export class DirectSpawner implements Spawner {
  readonly mode = 'direct';
  private readonly platform: Platform;

  constructor(platform: Platform = LINUX) {
    this.platform = platform;
  }

  async start(request: SpawnRequest): Promise<SpawnedProcess> {
    const command = this.platform.commandLine(request.file, request.args);
    const child = spawn(command.file, command.args, {
      cwd: request.cwd,
      env: request.env,
      // A tree the platform can stop: its own session and process group on posix; on Windows no
      // console window, the tree found by taskkill /T.
      ...this.platform.workerSpawnOptions,
      ...(command.windowsVerbatimArguments ? { windowsVerbatimArguments: true } : {}),
      stdio: [request.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise<ExitStatus>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      // Also keeps a later 'error' (none is expected once spawned) from being thrown as unhandled.
      child.once('error', reject);
    });
    if (request.stdin !== undefined && child.stdin) {
      // A worker may exit without reading all of its stdin: EPIPE here is not a failure.
      child.stdin.on('error', () => undefined);
      child.stdin.end(request.stdin);
    }
    if (child.pid === undefined || !child.stdout || !child.stderr) throw new Error('spawn returned no pid or pipes');
    return { pid: child.pid, stdout: child.stdout, stderr: child.stderr, exited, closed };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Frame kinds, helper → server: [kind u8][task id u32][payload length u32][payload]. */
const READY = 0;
const STARTED = 1;
const FAILED = 2;
const OUT = 3;
const ERR = 4;
const OUT_END = 5;
const ERR_END = 6;
const EXIT = 7;
const HEADER_BYTES = 9;

/** Helper failures in a row (dying before it says it is ready) after which tasks are spawned directly. */
const MAX_HELPER_FAILURES = 3;
const DEFAULT_IDLE_MS = 30_000;
/** How long close() waits for the helper to exit before killing it. */
const CLOSE_WAIT_MS = 2000;

const HELPER_SOURCE_VAR = 'MONITOR_SPAWN_HELPER_SOURCE';
const HELPER_BOOT = `import os; exec(compile(os.environ.pop("${HELPER_SOURCE_VAR}"), "monitor-spawn-helper", "exec"))`;

/**
 * The helper. Requests arrive as JSON lines on stdin ({"op": "start" | "pause" | "resume" | "close", "id", …});
 * everything goes back as frames on stdout. At EOF on stdin (the server closed it, or died) it
 * kills the process groups it started and exits. Standard library only; run with -I -S.
 */
export const HELPER_SOURCE = String.raw`
import errno, json, os, selectors, signal, struct, subprocess, sys

HEADER = struct.Struct(">BII")
READY, STARTED, FAILED, OUT, ERR, OUT_END, ERR_END, EXIT = range(8)
CHUNK = 65536
sel = selectors.DefaultSelector()
outbox = []
tasks = {}
by_pid = {}


def emit(kind, tid, payload=b""):
    outbox.append(HEADER.pack(kind, tid, len(payload)))
    if payload:
        outbox.append(payload)


def flush():
    # Blocking writes: when the server reads slowly, the helper waits and so do the workers' pipes.
    if outbox:
        data = memoryview(b"".join(outbox))
        outbox.clear()
        while data:
            data = data[os.write(1, data):]


class Stream:
    __slots__ = ("task", "kind", "file", "paused", "open")

    def __init__(self, task, kind, file):
        self.task, self.kind, self.file, self.paused, self.open = task, kind, file, False, True
        os.set_blocking(file.fileno(), False)
        sel.register(file.fileno(), selectors.EVENT_READ, (on_output, self))

    def close(self):
        if self.open:
            self.open = False
            if not self.paused:
                sel.unregister(self.file.fileno())
            self.file.close()


class Task:
    __slots__ = ("id", "proc", "streams", "stdin", "pending", "exited")


def popen(argv, msg, text):
    return subprocess.Popen(
        argv, cwd=msg["cwd"], env=msg["env"], bufsize=0,
        stdin=subprocess.DEVNULL if text is None else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def start(msg):
    tid = msg["id"]
    text = msg.get("stdin")
    argv = [msg["file"], *msg["args"]]
    try:
        try:
            proc = popen(argv, msg, text)
        except OSError as e:
            if e.errno != errno.ENOEXEC:
                raise
            # As Node's spawn does (glibc's execvpe): a file the kernel cannot run goes to /bin/sh.
            proc = popen(["/bin/sh", *argv], msg, text)
    except OSError as e:
        emit(FAILED, tid, json.dumps({"errno": e.errno or 0, "message": e.strerror or str(e)}).encode())
        return
    except (ValueError, TypeError) as e:
        emit(FAILED, tid, json.dumps({"errno": errno.EINVAL, "message": str(e)}).encode())
        return
    task = Task()
    task.id, task.proc, task.exited, task.stdin, task.pending = tid, proc, False, None, None
    tasks[tid] = task
    by_pid[proc.pid] = task
    task.streams = (Stream(task, OUT, proc.stdout), Stream(task, ERR, proc.stderr))
    emit(STARTED, tid, str(proc.pid).encode())
    if text is not None:
        task.stdin = proc.stdin
        task.pending = memoryview(text.encode())
        os.set_blocking(proc.stdin.fileno(), False)
        write_stdin(task, False)


def write_stdin(task, registered=True):
    if task.stdin is None:
        return  # an event of this round for a pipe closed earlier in the round
    fd = task.stdin.fileno()
    try:
        while task.pending:
            task.pending = task.pending[os.write(fd, task.pending):]
    except BlockingIOError:
        if not registered:
            sel.register(fd, selectors.EVENT_WRITE, (write_stdin, task))
        return
    except OSError:
        pass  # EPIPE: the worker exited without reading all of it, which is not a failure.
    close_stdin(task, registered)


def close_stdin(task, registered):
    if task.stdin is not None:
        if registered:
            sel.unregister(task.stdin.fileno())
        task.stdin.close()
        task.stdin = None
        task.pending = None


def on_output(stream):
    if not stream.open or stream.paused:
        return  # an event of this round for a pipe closed or paused earlier in the round
    try:
        data = os.read(stream.file.fileno(), CHUNK)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        emit(stream.kind, stream.task.id, data)
        return
    stream.close()
    emit(stream.kind + 2, stream.task.id)
    forget_if_done(stream.task)


def forget_if_done(task):
    if task.exited and not any(s.open for s in task.streams):
        close_stdin(task, task.pending is not None)
        tasks.pop(task.id, None)


def on_wake(_):
    try:
        while os.read(wake_r, 512):
            pass
    except BlockingIOError:
        pass
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        task = by_pid.pop(pid, None)
        if task is None:
            continue
        task.proc.returncode = status  # reaped here: Popen must not wait for it again
        task.exited = True
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "SIG%d" % number
            result = {"code": None, "signal": name}
        else:
            result = {"code": os.WEXITSTATUS(status), "signal": None}
        emit(EXIT, task.id, json.dumps(result).encode())
        forget_if_done(task)


control = bytearray()


def on_control(_):
    global control
    scan = len(control)
    chunk = os.read(0, 1 << 20)
    if not chunk:
        shutdown()
    control += chunk
    begin = 0
    while True:
        end = control.find(b"\n", scan)
        if end < 0:
            break
        handle(json.loads(control[begin:end]))
        begin = scan = end + 1
    del control[:begin]


def handle(msg):
    op = msg["op"]
    if op == "start":
        start(msg)
        return
    task = tasks.get(msg["id"])
    if task is None:
        return
    stream = task.streams[msg["stream"]]
    if op == "close":
        stream.close()
        forget_if_done(task)
        return
    if not stream.open:
        return
    if op == "pause" and not stream.paused:
        sel.unregister(stream.file.fileno())
        stream.paused = True
    elif op == "resume" and stream.paused:
        sel.register(stream.file.fileno(), selectors.EVENT_READ, (on_output, stream))
        stream.paused = False


def shutdown():
    # The server closed the channel or is gone: nothing it started may outlive it.
    for task in tasks.values():
        try:
            os.killpg(task.proc.pid, signal.SIGKILL)
        except OSError:
            pass
    sys.exit(0)


wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
signal.signal(signal.SIGCHLD, lambda number, frame: None)
sel.register(wake_r, selectors.EVENT_READ, (on_wake, None))
sel.register(0, selectors.EVENT_READ, (on_control, None))
emit(READY, 0)
flush()
while True:
    for key, _ in sel.select():
        handler, arg = key.data
        handler(arg)
    flush()
`;

/** A task's stdout or stderr as the helper relays it; pausing it pauses reading the worker's pipe. */
class RelayStream extends Readable {
  private paused = false;
  private ended = false;

  constructor(
    private readonly flow: (reading: boolean) => void,
    private readonly gone: () => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  deliver(chunk: Buffer): void {
    if (this.destroyed) return;
    if (!this.push(chunk) && !this.paused) {
      this.paused = true;
      this.flow(false);
    }
  }

  /** The end of the stream (once; nothing after a destroy). */
  finish(): void {
    if (!this.destroyed && !this.ended) {
      this.ended = true;
      this.push(null);
    }
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      this.flow(true);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.gone();
    callback(error);
  }
}

/** One process started through the helper. */
class RelayProcess implements SpawnedProcess {
  readonly stdout: RelayStream;
  readonly stderr: RelayStream;
  readonly exited: Promise<ExitStatus>;
  readonly closed: Promise<void>;
  private resolveExit!: (status: ExitStatus) => void;
  private resolveClosed!: () => void;
  private exitStatus: ExitStatus | undefined;
  private open = 2;

  constructor(
    id: number,
    readonly pid: number,
    send: (message: Record<string, unknown>) => void,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    const stream = (index: number): RelayStream => {
      let ended = false;
      const relay = new RelayStream(
        (reading) => send({ op: reading ? 'resume' : 'pause', id, stream: index }),
        () => {
          if (ended) return;
          ended = true;
          // Destroyed before its end (the pool gave up waiting for a grandchild): stop relaying it.
          send({ op: 'close', id, stream: index });
          this.streamDone();
        },
      );
      relay.once('end', () => {
        if (ended) return;
        ended = true;
        this.streamDone();
      });
      return relay;
    };
    this.stdout = stream(0);
    this.stderr = stream(1);
  }

  exit(status: ExitStatus): void {
    if (this.exitStatus !== undefined) return;
    this.exitStatus = status;
    this.resolveExit(status);
    if (this.open === 0) this.resolveClosed();
  }

  /** The helper died: what it relayed is all there will be. */
  abandon(): void {
    this.stdout.finish();
    this.stderr.finish();
    this.exit({ code: null, signal: 'SIGKILL' });
  }

  private streamDone(): void {
    this.open--;
    if (this.open === 0 && this.exitStatus !== undefined) this.resolveClosed();
  }
}

interface PendingStart {
  request: SpawnRequest;
  resolve: (process: SpawnedProcess) => void;
  reject: (error: Error) => void;
}

/** One helper process and its framed channel. */
class Helper {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, PendingStart>();
  private readonly live = new Map<number, RelayProcess>();
  private buffered: Buffer = Buffer.alloc(0);
  private nextId = 1;
  ready = false;
  /** Set once it has exited (or could not start); no request is sent after that. */
  dead = false;
  /** Asked to exit (idle, or the spawner closed): its exit is not a failure. */
  private ending = false;
  private stderrTail = '';

  constructor(
    python: string,
    env: Record<string, string>,
    private readonly events: {
      idle: (helper: Helper) => void;
      died: (helper: Helper, beforeReady: boolean, detail: string) => void;
      signalTree: (pid: number) => void;
    },
  ) {
    // The source comes in the environment, so `ps` shows one short line, not the whole program.
    this.child = spawn(python, ['-I', '-S', '-c', HELPER_BOOT], {
      // A group of its own: a terminal's Ctrl-C to the server's group must not reach it (it ends
      // with the server anyway: EOF on its stdin).
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...env, [HELPER_SOURCE_VAR]: HELPER_SOURCE },
      // Not the server's cwd: the helper must not keep a folder busy.
      cwd: '/',
    });
    this.child.stdout?.on('data', (chunk: Buffer) => this.read(chunk));
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-2000);
    });
    // EPIPE when it died between writes: its exit is handled below.
    this.child.stdin?.on('error', () => undefined);
    this.child.once('error', (error) => this.fail(`could not start: ${error.message}`));
    this.child.once('close', (code, signal) =>
      this.fail(`exited (${signal ?? `code ${String(code)}`})${this.stderrTail ? `: ${this.stderrTail.trim()}` : ''}`),
    );
    this.idleRefs();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get busy(): boolean {
    return this.pending.size > 0 || this.live.size > 0;
  }

  start(request: SpawnRequest): Promise<SpawnedProcess> {
    const id = this.nextId++;
    return new Promise<SpawnedProcess>((resolve, reject) => {
      this.pending.set(id, { request, resolve, reject });
      this.idleRefs();
      this.send({
        op: 'start',
        id,
        file: request.file,
        args: request.args,
        cwd: request.cwd,
        env: request.env,
        stdin: request.stdin ?? null,
      });
    });
  }

  /** Takes back the requests not yet answered (the helper never became ready: nothing was started). */
  takePending(): PendingStart[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    return all;
  }

  end(): Promise<void> {
    this.ending = true;
    if (this.dead) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
      }, CLOSE_WAIT_MS);
      this.child.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.ref();
      this.child.stdin?.end();
    });
  }

  private send(message: Record<string, unknown>): void {
    if (this.dead) return;
    this.child.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  /** Keeps the event loop alive only while it has work: an idle helper must not hold the server open. */
  private idleRefs(): void {
    const streams = [this.child.stdin, this.child.stdout, this.child.stderr] as unknown as ({
      ref?: () => void;
      unref?: () => void;
    } | null)[];
    if (this.busy) {
      this.child.ref();
      for (const stream of streams) stream?.ref?.();
    } else {
      this.child.unref();
      for (const stream of streams) stream?.unref?.();
    }
  }

  private read(chunk: Buffer): void {
    let data = this.buffered.length > 0 ? Buffer.concat([this.buffered, chunk]) : chunk;
    let offset = 0;
    while (data.length - offset >= HEADER_BYTES) {
      const length = data.readUInt32BE(offset + 5);
      if (data.length - offset < HEADER_BYTES + length) break;
      const kind = data.readUInt8(offset);
      const id = data.readUInt32BE(offset + 1);
      // A copy: a small frame must not keep the whole 64 KiB read alive inside a task's capture.
      const payload = Buffer.from(data.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length));
      offset += HEADER_BYTES + length;
      this.frame(kind, id, payload);
    }
    data = data.subarray(offset);
    this.buffered = data.length > 0 ? Buffer.from(data) : Buffer.alloc(0);
  }

  private frame(kind: number, id: number, payload: Buffer): void {
    if (kind === READY) {
      this.ready = true;
      return;
    }
    if (kind === STARTED || kind === FAILED) {
      const start = this.pending.get(id);
      if (!start) return;
      this.pending.delete(id);
      if (kind === STARTED) {
        const task = new RelayProcess(id, Number(payload.toString('latin1')), (message) => this.send(message));
        this.live.set(id, task);
        void task.closed.then(() => {
          this.live.delete(id);
          this.idleRefs();
          if (!this.busy) this.events.idle(this);
        });
        start.resolve(task);
      } else {
        const { errno, message } = JSON.parse(payload.toString('utf8')) as { errno: number; message: string };
        start.reject(spawnError(start.request, errno, message));
        this.idleRefs();
        if (!this.busy) this.events.idle(this);
      }
      return;
    }
    const task = this.live.get(id);
    if (!task) return;
    if (kind === OUT || kind === ERR) (kind === OUT ? task.stdout : task.stderr).deliver(payload);
    else if (kind === OUT_END) task.stdout.finish();
    else if (kind === ERR_END) task.stderr.finish();
    else if (kind === EXIT) task.exit(JSON.parse(payload.toString('utf8')) as ExitStatus);
  }

  private fail(detail: string): void {
    if (this.dead) return;
    this.dead = true;
    if (!this.ending) this.events.died(this, !this.ready, detail);
    // Its processes run on without their pipes or a parent that reaps them: end their groups.
    for (const task of this.live.values()) {
      this.events.signalTree(task.pid);
      task.abandon();
    }
    this.live.clear();
    const lost = this.takePending();
    for (const start of lost)
      start.reject(
        new SpawnError(
          start.request.file,
          start.request.args,
          'EPIPE',
          -osConstants.errno.EPIPE,
          `spawn ${start.request.file}: the spawn helper ${detail}`,
        ),
      );
  }
}

/**
 * The helper's environment without MONITOR_* variables: a server started by another's worker
 * inherited that one's run token, and the helper must not be swept as that task's descendant.
 */
function helperEnv(base: SpawnerOptions['env']): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(base ?? {}))
    if (value !== undefined && !name.startsWith('MONITOR_')) env[name] = value;
  return env;
}

function spawnError(request: SpawnRequest, errno: number, detail: string): SpawnError {
  const code = errnoName(errno);
  const error = new SpawnError(request.file, request.args, code, -errno);
  if (code === 'EINVAL' && detail) error.message = `spawn ${request.file} EINVAL: ${detail}`;
  return error;
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return `E${errno}`;
}

/** What Node refuses before it forks: a NUL byte cannot be passed to exec. */
function checkRequest(request: SpawnRequest): void {
  const strings = [request.file, request.cwd, ...request.args, ...Object.entries(request.env).flat()];
  if (strings.some((s) => s.includes('\0'))) {
    throw Object.assign(
      new TypeError('The arguments, cwd or environment of a process must be strings without null bytes.'),
      { code: 'ERR_INVALID_ARG_VALUE' },
    );
  }
}

/** Lone UTF-16 surrogates: Node's spawn turns them into U+FFFD; the helper would refuse them. */
const LONE_SURROGATE = /\p{Cs}/u;
const wellFormed = (text: string): string => (LONE_SURROGATE.test(text) ? text.replace(/\p{Cs}/gu, '\uFFFD') : text);

function normalized(request: SpawnRequest): SpawnRequest {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.env)) env[wellFormed(name)] = wellFormed(value);
  return {
    file: wellFormed(request.file),
    args: request.args.map(wellFormed),
    cwd: wellFormed(request.cwd),
    env,
    stdin: request.stdin === undefined ? undefined : wellFormed(request.stdin),
  };
}

/**
 * Starts processes through the helper (see the top of this file). Started on the first request;
 * exits after `idleMs` with nothing running. Without a usable Python, or when the helper keeps
 * dying before it is ready, processes are started directly (and the log says so once).
 */
export class RelaySpawner implements Spawner {
  private readonly options: SpawnerOptions;
  private readonly direct: DirectSpawner;
  private helper: Helper | undefined;
  private starting: Promise<Helper | undefined> | undefined;
  private failures = 0;
  private fallback = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: SpawnerOptions) {
    this.direct = new DirectSpawner(options.platform);
    this.options = options;
  }

  get mode(): 'relay' | 'direct' {
    return this.fallback ? 'direct' : 'relay';
  }

  /** The helper's pid while one runs (tests, diagnostics). */
  get helperPid(): number | undefined {
    return this.helper && !this.helper.dead ? this.helper.pid : undefined;
  }

  async start(request: SpawnRequest): Promise<SpawnedProcess> {
    checkRequest(request);
    if (this.closed) throw new Error('the spawner is closed');
    const helper = await this.currentHelper();
    if (!helper) return this.direct.start(request);
    clearTimeout(this.idleTimer);
    return helper.start(normalized(request));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    await this.starting;
    const helper = this.helper;
    this.helper = undefined;
    await helper?.end();
  }

  private currentHelper(): Promise<Helper | undefined> {
    if (this.fallback) return Promise.resolve(undefined);
    if (this.helper && !this.helper.dead) return Promise.resolve(this.helper);
    this.starting ??= this.launch().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async launch(): Promise<Helper | undefined> {
    let python: string;
    try {
      python = await this.options.python();
    } catch (error) {
      this.giveUp(`no Python for the spawn helper (${error instanceof Error ? error.message : String(error)})`);
      return undefined;
    }
    const helper = new Helper(python, helperEnv(this.options.env), {
      idle: (h) => this.idle(h),
      died: (h, beforeReady, detail) => this.died(h, beforeReady, detail),
      signalTree: (pid) => {
        this.options.processes.signalTree(pid, 'SIGKILL');
      },
    });
    this.helper = helper;
    return helper;
  }

  private idle(helper: Helper): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.helper !== helper || helper.busy) return;
      this.helper = undefined;
      void helper.end();
    }, this.options.idleMs ?? DEFAULT_IDLE_MS);
    this.idleTimer.unref();
  }

  private died(helper: Helper, beforeReady: boolean, detail: string): void {
    if (this.helper === helper) this.helper = undefined;
    if (this.closed) return;
    if (!beforeReady) {
      this.failures = 0;
      this.options.log.error(`the spawn helper (pid ${String(helper.pid)}) ${detail}; its running tasks were killed`);
      return;
    }
    // It never became ready, so it started nothing: its requests can go elsewhere safely.
    this.failures++;
    this.options.log.warn(`the spawn helper ${detail}`);
    if (this.failures >= MAX_HELPER_FAILURES) this.giveUp(`the spawn helper failed ${this.failures} times`);
    for (const start of helper.takePending()) this.start(start.request).then(start.resolve, start.reject);
  }

  private giveUp(why: string): void {
    if (this.fallback) return;
    this.fallback = true;
    this.options.log.warn(`${why}: starting script tasks directly from the server (slower per task)`);
  }
}
