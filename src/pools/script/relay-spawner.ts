import type { Logger } from '../../log.js';
import type { Platform } from '../../platform/index.js';
import type { ProcessControl } from '../../processes.js';
import { Helper, type HelperProgram, readHelperProgram } from './spawn-helper.js';
import { type Adopter, DirectSpawner, type SpawnedProcess, type Spawner, type SpawnRequest } from './spawner.js';

/** Helper failures in a row (dying before it says it is ready) after which tasks are spawned directly. */
const MAX_HELPER_FAILURES = 3;
const DEFAULT_IDLE_MS = 30_000;

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
  /** The helper's program (default: the package's python/spawn_helper.py). */
  helperFile?: string;
  /** Where the helper pays off (Linux: elsewhere Node already uses posix_spawn, or vfork is missing) and how workers start. */
  platform: Platform;
}

/** The relay spawner where it pays (Linux), Node's own spawn elsewhere. */
export function createSpawner(options: SpawnerOptions): Spawner {
  return options.platform.spawnHelper ? new RelaySpawner(options) : new DirectSpawner(options.platform);
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
 * Starts processes through the helper (see spawner.ts and spawn-helper.ts). Started on the first request;
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
  /** The helper's program, read on the first start and kept. */
  private program: Promise<HelperProgram> | undefined;

  constructor(options: SpawnerOptions) {
    this.direct = new DirectSpawner(options.platform);
    this.options = options;
  }

  get mode(): 'relay' | 'direct' {
    return this.fallback ? 'direct' : 'relay';
  }

  /** The helper's pid while one runs (tests, diagnostics). */
  get helperPid(): number | undefined {
    return this.helper && !this.helper.dead && this.helper.pid > 0 ? this.helper.pid : undefined;
  }

  /** The running helper, once it said it adopts its tasks' orphans. */
  get adopter(): Adopter | undefined {
    const helper = this.helper;
    return helper && !helper.dead && helper.subreaper ? helper : undefined;
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
    let program: HelperProgram;
    try {
      python = await this.options.python();
    } catch (error) {
      this.giveUp(`no Python for the spawn helper (${errorMessage(error)})`);
      return undefined;
    }
    try {
      this.program ??= readHelperProgram(this.options.helperFile);
      program = await this.program;
    } catch (error) {
      // A package installed without python/: nothing to retry.
      this.giveUp(`the spawn helper is missing (${errorMessage(error)})`);
      return undefined;
    }
    const helper = new Helper(python, program, helperEnv(this.options.env), {
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
