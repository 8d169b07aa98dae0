// The serve loop for Node workers (`.mjs`), as workers/_common.py's serve() is for Python ones.
//
// Not a worker (the catalog skips names starting with "_"). A worker imports it relative to its
// own file, is written once as `handle(task) => result` (async or not) and ends with
// `await serve(handle)`. Run cold (by hand, or one process per task) it reads its arguments and
// stdin; run warm (the server sets MONITOR_WARM=1) it serves one task per request line on fd 3 and
// replies on fd 4. See workers/README.md, "Warm workers". Node built-ins only.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import tty from 'node:tty';

const REQUESTS_FD = 3;
const REPLIES_FD = 4;

/** Thrown by fail(): the task's input is wrong. Its message goes to stderr, its exit code (2) is the task's. */
export class TaskFailure extends Error {
  constructor(message, exitCode = 2) {
    super(message);
    this.name = 'TaskFailure';
    this.exitCode = exitCode;
  }
}

/** Ends the task: `<worker>: message` on stderr, exit code 2 (cold: the process's; warm: the reply's). */
export function fail(message, exitCode = 2) {
  throw new TaskFailure(message, exitCode);
}

/**
 * One task's input: `args` (strings), `stdin` (text or undefined), `json` (the value of a JSON
 * input, else undefined) and `env` (its MONITOR_* variables, also set in process.env while it runs).
 */
class Task {
  constructor(args, env, stdin, json) {
    this.args = args;
    this.env = env;
    this.stdin = stdin === '' ? undefined : stdin;
    this.json = json;
  }
}

/** The task of a cold run: process.argv and stdin, read only when asked for (a terminal is not read). */
class ColdTask {
  #stdin;
  #json;

  constructor() {
    this.args = process.argv.slice(2);
    this.env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key.startsWith('MONITOR_')));
  }

  get stdin() {
    if (this.#stdin === undefined) this.#stdin = stdinText();
    return this.#stdin === '' ? undefined : this.#stdin;
  }

  get json() {
    if (this.#json === undefined && process.env.MONITOR_STDIN_FORMAT === 'json' && this.stdin !== undefined) {
      try {
        this.#json = { value: JSON.parse(this.stdin) };
      } catch (error) {
        fail(`stdin is not JSON: ${error.message}`);
      }
    }
    return this.#json?.value;
  }
}

function stdinText() {
  // process.stdin is left alone: creating it would make a piped fd 0 non-blocking for readFileSync.
  if (process.env.MONITOR_STDIN_FORMAT !== 'json' && tty.isatty(0)) return '';
  try {
    return fs.readFileSync(0, 'utf8');
  } catch (error) {
    if (error.code === 'EBADF') return '';
    throw error;
  }
}

/**
 * Runs `handle(task)` cold (once, on process.argv and stdin) or warm (MONITOR_WARM=1: once per
 * request on fd 3, each answered on fd 4) and prints or sends what it returns: a string as is,
 * anything else as one JSON document; undefined sends nothing. `name` prefixes failures on stderr
 * (default: the script's file name without extension).
 */
export async function serve(handle, { name } = {}) {
  const worker = name ?? path.basename(process.argv[1] ?? 'worker').replace(/\.[^.]*$/, '');
  if (process.env.MONITOR_WARM === '1') {
    await serveWarm(handle, worker);
    return;
  }
  const outcome = await runHandle(handle, new ColdTask(), worker);
  if (outcome.exitCode !== 0) process.exitCode = outcome.exitCode;
  else if (typeof outcome.result === 'string') process.stdout.write(outcome.result);
  else if (outcome.json !== undefined) process.stdout.write(`${outcome.json}\n`);
}

/** { exitCode, result, json }: json is the result as JSON text, undefined when there is none. */
async function runHandle(handle, task, worker) {
  try {
    const result = await handle(task);
    return { exitCode: 0, result, json: typeof result === 'string' ? undefined : JSON.stringify(result) };
  } catch (error) {
    if (error instanceof TaskFailure) {
      process.stderr.write(`${worker}: ${error.message}\n`);
      return { exitCode: error.exitCode };
    }
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return { exitCode: 1 };
  }
}

async function serveWarm(handle, worker) {
  // Not passed on: a child of a task must not take itself for a warm worker.
  delete process.env.MONITOR_WARM;
  if (!isChannel(REQUESTS_FD) || !isChannel(REPLIES_FD)) {
    process.stderr.write(
      `${worker}: MONITOR_WARM=1 but fd 3 and fd 4 are not open (the server passes them); unset MONITOR_WARM to run it cold\n`,
    );
    process.exitCode = 2;
    return;
  }
  const input = fs.createReadStream(null, { fd: REQUESTS_FD });
  const requests = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const line of requests) {
    if (line.trim() === '') continue;
    const reply = await runRequest(handle, worker, line);
    // The task's log must be in its pipes before the reply that ends it.
    await drain(process.stdout);
    await drain(process.stderr);
    sendReply(reply);
  }
  await drain(process.stdout);
  await drain(process.stderr);
  // A timer or socket a task left behind must not keep a finished worker alive.
  process.exit(0);
}

/** True for a pipe, socket or file; not for nothing, nor for an fd Node itself opened there (epoll, eventfd). */
function isChannel(fd) {
  try {
    const info = fs.fstatSync(fd);
    return info.isFIFO() || info.isSocket() || info.isFile();
  } catch {
    return false;
  }
}

/** The reply line (JSON, without its newline) to one request line. */
async function runRequest(handle, worker, line) {
  let request;
  let task;
  try {
    request = JSON.parse(line);
    task = taskOf(request);
  } catch (error) {
    process.stderr.write(`${worker}: bad request (${error.message}): ${JSON.stringify(line.slice(0, 200))}\n`);
    return `{"id":${JSON.stringify(request?.id ?? null)},"exit_code":1}`;
  }
  const head = `{"id":${JSON.stringify(request.id)},"exit_code":`;
  const outcome = await runTask(handle, task, worker);
  if (outcome.exitCode !== 0) return `${head}${outcome.exitCode}}`;
  if (typeof outcome.result === 'string') return `${head}0,"output":${JSON.stringify(outcome.result)}}`;
  // The result is already JSON text: spliced in rather than parsed and serialised again.
  return outcome.json === undefined ? `${head}0}` : `${head}0,"result":${outcome.json}}`;
}

/** runHandle, with what the task changes in process.env and process.argv undone afterwards. */
async function runTask(handle, task, worker) {
  const savedEnv = Object.fromEntries(Object.keys(task.env).map((key) => [key, process.env[key]]));
  const savedArgv = process.argv;
  const setUpAndHandle = (t) => {
    Object.assign(process.env, t.env);
    process.argv = [...savedArgv.slice(0, 2), ...t.args];
    return handle(t);
  };
  try {
    return await runHandle(setUpAndHandle, task, worker);
  } finally {
    process.argv = savedArgv;
    for (const [key, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

function taskOf(request) {
  if (request === null || typeof request !== 'object' || Array.isArray(request) || !('id' in request))
    throw new Error('not an object with an id');
  const { args = [], env = {}, stdin } = request;
  if (!Array.isArray(args) || !args.every((arg) => typeof arg === 'string'))
    throw new Error('args must be a list of strings');
  if (env === null || typeof env !== 'object' || !Object.values(env).every((value) => typeof value === 'string'))
    throw new Error('env must map names to strings');
  if (stdin !== undefined && typeof stdin !== 'string') throw new Error('stdin must be a string');
  const given = 'json' in request;
  // A JSON input is also stdin as one line of JSON, as a cold worker reads it.
  return new Task(args, env, given ? `${JSON.stringify(request.json)}\n` : stdin, given ? request.json : undefined);
}

/** Resolves once everything written to the stream so far has reached its fd. */
function drain(stream) {
  if (stream.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => stream.write('', () => resolve()));
}

function sendReply(line) {
  const data = Buffer.from(`${line}\n`);
  let sent = 0;
  while (sent < data.length) {
    try {
      sent += fs.writeSync(REPLIES_FD, data, sent);
    } catch (error) {
      // A non-blocking pipe that is full: wait a moment, the server is reading.
      if (error.code === 'EAGAIN') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      // The server is gone or closed the channel: nobody is left to serve.
      else process.exit(1);
    }
  }
}
