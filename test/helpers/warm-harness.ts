import { execFile, spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';

/**
 * Drives one warm worker process over the warm protocol (workers/README.md, "Warm workers") the
 * way the server does: requests on fd 3, replies on fd 4, fd 1 and fd 2 captured as the task's log.
 */

export interface WarmRequest {
  args?: string[];
  stdin?: string;
  json?: unknown;
  env?: Record<string, string>;
}

export interface WarmReply {
  id: unknown;
  exit_code: number;
  result?: unknown;
  output?: string;
}

export interface WarmAnswer {
  reply: WarmReply;
  /** What the worker wrote on stdout and stderr from the previous reply up to this one. */
  log: string;
}

export interface WarmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Output written after the last reply. */
  log: string;
}

export interface StartOptions {
  cwd: string;
  /** The whole environment (MONITOR_WARM=1 is added). */
  env: Record<string, string>;
  /** How long one request may wait for its reply before the test is told (a hung worker). */
  replyTimeoutMs?: number;
}

interface Pending {
  resolve: (answer: WarmAnswer) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class WarmWorker {
  readonly child: ChildProcess;
  /** Every line that came on fd 4, in order: a stray write there would show up here. */
  readonly replyLines: string[] = [];
  private readonly requests: Writable;
  private readonly replyTimeoutMs: number;
  private nextId = 1;
  private log = '';
  private partial = '';
  private pending: Pending | undefined;
  private readonly exited: Promise<WarmExit>;

  private constructor(command: string, args: string[], options: StartOptions) {
    this.replyTimeoutMs = options.replyTimeoutMs ?? 20_000;
    this.child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...options.env, MONITOR_WARM: '1' },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    });
    const [, stdout, stderr, requests, replies] = this.child.stdio;
    if (!isReadable(stdout) || !isReadable(stderr) || !isWritable(requests) || !isReadable(replies))
      throw new Error('spawn did not give the five pipes asked for');
    this.requests = requests;
    // A worker that exits while a request is still being written: its fate is told by `exited`.
    requests.on('error', () => {});
    for (const stream of [stdout, stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        this.log += chunk;
      });
    }
    replies.setEncoding('utf8');
    replies.on('data', (chunk: string) => this.onReplies(chunk));
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        const log = this.takeLog();
        if (this.pending) clearTimeout(this.pending.timer);
        this.pending?.reject(
          new Error(`the worker ended (code ${code}, signal ${signal}) before replying; its log: ${log}`),
        );
        resolve({ code, signal, log });
      });
    });
  }

  static start(command: string, args: string[], options: StartOptions): WarmWorker {
    return new WarmWorker(command, args, options);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Sends one task (the next id) and waits for its reply. */
  send(request: WarmRequest): Promise<WarmAnswer> {
    return this.sendLine(JSON.stringify({ id: this.nextId++, ...request }));
  }

  /** Sends a line as is (garbage included) and waits for the reply to it. */
  sendLine(line: string): Promise<WarmAnswer> {
    if (this.pending) throw new Error('one request at a time');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(
          new Error(`no reply within ${this.replyTimeoutMs} ms to ${line.slice(0, 200)}; log so far: ${this.log}`),
        );
      }, this.replyTimeoutMs);
      this.pending = { resolve, reject, timer };
      this.requests.write(`${line}\n`);
    });
  }

  /** Closes fd 3, as the server does to end a warm process, and waits for the exit. */
  end(): Promise<WarmExit> {
    this.requests.end();
    return this.exited;
  }

  /** Kills it (a test's cleanup) and waits for the exit. */
  kill(): Promise<WarmExit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    return this.exited;
  }

  private onReplies(chunk: string): void {
    this.partial += chunk;
    let end = this.partial.indexOf('\n');
    while (end !== -1) {
      const line = this.partial.slice(0, end);
      this.partial = this.partial.slice(end + 1);
      this.replyLines.push(line);
      this.settle(line);
      end = this.partial.indexOf('\n');
    }
  }

  private settle(line: string): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    clearTimeout(pending.timer);
    let reply: WarmReply;
    try {
      reply = JSON.parse(line) as WarmReply;
    } catch {
      pending.reject(new Error(`a reply that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    // As the server does: one turn of the loop for the output written before the reply to arrive.
    setImmediate(() => pending.resolve({ reply, log: this.takeLog() }));
  }

  private takeLog(): string {
    const log = this.log;
    this.log = '';
    return log;
  }
}

function isReadable(stream: unknown): stream is Readable {
  return stream !== null && typeof stream === 'object' && 'setEncoding' in stream;
}

function isWritable(stream: unknown): stream is Writable {
  return stream !== null && typeof stream === 'object' && 'write' in stream && 'end' in stream;
}

export interface ColdRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a worker once, cold: args, the given stdin text (else /dev/null), stdout and stderr kept apart. */
export function runCold(
  command: string,
  args: string[],
  options: { cwd: string; env: Record<string, string>; stdin?: string },
): Promise<ColdRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.stdin);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The cold-task equivalent of a warm request: its args, and its stdin as the server would write it. */
export function coldInput(request: WarmRequest): { args: string[]; stdin?: string; format: 'json' | 'text' | 'none' } {
  const args = request.args ?? [];
  if (request.json !== undefined) return { args, stdin: `${JSON.stringify(request.json)}\n`, format: 'json' };
  if (request.stdin !== undefined) return { args, stdin: request.stdin, format: 'text' };
  return { args, format: 'none' };
}

let python: Promise<string> | undefined;

/** The real python3 executable: a version manager's shim (pyenv) costs ~0.3 s a start. */
export function pythonExecutable(): Promise<string> {
  python ??= promisify(execFile)('python3', ['-c', 'import sys; print(sys.executable)']).then(({ stdout }) =>
    stdout.trim(),
  );
  return python;
}
