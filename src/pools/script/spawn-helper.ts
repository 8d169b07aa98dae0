import { type ChildProcess, spawn } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RelayProcess } from './relay-process.js';
import { type Adopter, type ExitStatus, type SpawnedProcess, SpawnError, type SpawnRequest } from './spawner.js';

/**
 * The spawn helper as the server runs it: python/spawn_helper.py (its protocol is described at
 * its top) started with `python3 -I -S`, requests written as JSON lines to its stdin, frames read
 * from its stdout.
 */

/** Frame kinds, helper → server (as in python/spawn_helper.py): [kind u8][task id u32][payload length u32][payload]. */
const READY = 0;
const STARTED = 1;
const FAILED = 2;
const OUT = 3;
const ERR = 4;
const OUT_END = 5;
const ERR_END = 6;
const EXIT = 7;
const HEADER_BYTES = 9;

/** How long close() waits for the helper to exit before killing it. */
const CLOSE_WAIT_MS = 2000;

/** The helper, relative to the package root: beside src/ in a checkout, beside dist/ once installed ("files" in package.json). */
const HELPER_PATH = path.join('python', 'spawn_helper.py');

const HELPER_SOURCE_VAR = 'MONITOR_SPAWN_HELPER_SOURCE';
const HELPER_FILE_VAR = 'MONITOR_SPAWN_HELPER_FILE';
/** Runs the source from the environment as the file it came from (tracebacks name it). */
const HELPER_BOOT = `import os; exec(compile(os.environ.pop("${HELPER_SOURCE_VAR}"), os.environ.pop("${HELPER_FILE_VAR}"), "exec"))`;

/** The helper's program, read once: a helper restarted later still matches this server's code, even after an upgrade in place. */
export interface HelperProgram {
  file: string;
  source: string;
}

/** Reads the helper (by default the package's own); rejects when it is missing. */
export async function readHelperProgram(file?: string): Promise<HelperProgram> {
  const helperFile = file ?? path.join(await packageRoot(), HELPER_PATH);
  return { file: helperFile, source: await readFile(helperFile, 'utf8') };
}

/** The package's root: the nearest folder with a package.json above this module (in src/ or dist/src/). */
export async function packageRoot(): Promise<string> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (await exists(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${here}`);
  }
}

const exists = (file: string): Promise<boolean> =>
  access(file).then(
    () => true,
    () => false,
  );

export interface PendingStart {
  request: SpawnRequest;
  resolve: (process: SpawnedProcess) => void;
  reject: (error: Error) => void;
}

/** One helper process and its framed channel. */
export class Helper implements Adopter {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, PendingStart>();
  private readonly live = new Map<number, RelayProcess>();
  private buffered: Buffer = Buffer.alloc(0);
  private nextId = 1;
  ready = false;
  /** It said it adopts the orphans of its tasks (a child subreaper; see python/spawn_helper.py). */
  subreaper = false;
  /** Set once it has exited (or could not start); no request is sent after that. */
  dead = false;
  /** Asked to exit (idle, or the spawner closed): its exit is not a failure. */
  private ending = false;
  private stderrTail = '';

  constructor(
    python: string,
    program: HelperProgram,
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
      env: { ...env, [HELPER_SOURCE_VAR]: program.source, [HELPER_FILE_VAR]: program.file },
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

  /** The helper's pid as an Adopter (0 before it started). */
  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Hands the helper processes found with it as their parent; it ends the strays among them. */
  sweep(found: ReadonlyArray<readonly [number, string]>): void {
    const workers = new Set([...this.live.values()].map((task) => task.pid));
    const procs = found.filter(([pid]) => !workers.has(pid)).map(([pid, start]) => [pid, Number(start)]);
    if (procs.length > 0) this.send({ op: 'sweep', procs });
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
      this.subreaper = readyFacts(payload).subreaper === true;
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

/** What the helper says of itself when ready (an older helper says nothing). */
function readyFacts(payload: Buffer): { subreaper?: unknown } {
  try {
    const facts: unknown = JSON.parse(payload.toString('utf8'));
    return facts !== null && typeof facts === 'object' ? facts : {};
  } catch {
    return {};
  }
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
