import { open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { isMonitorError, MonitorError } from '../../errors.js';
import { ScriptError } from './errors.js';
import type { Logger } from '../../log.js';
import { comparable, isInside, type PathRules, resolveInsideRoots } from '../../paths.js';
import { LINUX, type Platform } from '../../platform/index.js';
import { HEADER_SCAN_BYTES, parseWorkerHeader, type WorkerHeader } from './header.js';
import type { HelperAccess } from './helpers.js';
import { findExecutable, type InterpreterResolver } from './interpreters.js';

/** A script found in a workers folder, as list_workers shows it. */
export interface WorkerEntry {
  /** What run_script_batch's `worker` takes: the file name inside its folder. */
  name: string;
  dir: string;
  /** The real path (symlinks followed). */
  path: string;
  /** The configured interpreter (`python3`, `node`, …) or `executable` when it runs directly. */
  interpreter: string;
  header: WorkerHeader;
  /** A later folder's script with the same name, which this one hides. */
  shadows?: string[];
}

/** How to start one worker or command: `file` then `prefixArgs`, then the task's own args. */
export interface LaunchPlan {
  file: string;
  prefixArgs: string[];
  /** Short name for messages: the worker name or the command. */
  display: string;
  interpreter: string;
  /** Variables the worker declares it reads (its header's `env`). */
  declaredEnv: readonly string[];
  /** The worker declares `warm: yes`: it can serve many tasks in one process (see warm.ts). */
  warm: boolean;
  /** The worker declares `pack: files`: several inputs' args can run in one process (see pack.ts). */
  packFiles: boolean;
  /** How it reaches the bundled helpers (_common.py, _serve.mjs); absent for a command. */
  helpers?: HelperAccess;
}

/** A workers folder as list_workers and doctor show it. */
export interface WorkersFolder {
  dir: string;
  exists: boolean;
  /** The workers it holds, those an earlier folder hides included. */
  workers: number;
}

/** Python started so that nothing outside the script and the standard library loads code into it. */
const ISOLATED_PYTHON_FLAGS = ['-s', '-E'];
const PYTHON_INTERPRETER = /(^|[\\/])(python[0-9.]*|py)(\.exe)?$/i;

export interface WorkerCatalogOptions {
  workersDirs: readonly string[];
  allowCommands: readonly string[];
  interpreters: Readonly<Record<string, string>>;
  searchPath: string;
  resolver: InterpreterResolver;
  log: Logger;
  /** How files run and paths compare on this system (Linux when not given). */
  platform?: Platform;
  /** The bundled workers folder, whose helpers every worker may import (see helpers.ts). */
  helpersDir?: string;
}

const NOT_WORKERS = /^(readme|license|changelog)(\.|$)|\.(md|txt|json|ya?ml|toml|cfg|ini|lock|pyc)$/i;

/** Whether a file name in a workers folder may be a worker: not a helper module (`_…`), hidden file or document. */
export function isWorkerFileName(name: string): boolean {
  return !(name.startsWith('.') || name.startsWith('_') || NOT_WORKERS.test(name));
}

/** The scripts in the workers folders, and the rules for turning a request into a LaunchPlan. */
export class WorkerCatalog {
  private readonly options: WorkerCatalogOptions;

  constructor(options: WorkerCatalogOptions) {
    this.options = options;
  }

  private get platform(): Platform {
    return this.options.platform ?? LINUX;
  }

  get pathRules(): PathRules {
    return this.platform.pathRules;
  }

  get dirs(): readonly string[] {
    return this.options.workersDirs;
  }

  get allowCommands(): readonly string[] {
    return this.options.allowCommands;
  }

  /** Every runnable script at the top of each workers folder; the first folder wins a name clash. */
  async list(): Promise<WorkerEntry[]> {
    return (await this.survey()).workers;
  }

  /** The workers (as list()) and each workers folder in search order: whether it is there, how many workers it holds. */
  async survey(): Promise<{ workers: WorkerEntry[]; folders: WorkersFolder[] }> {
    const byName = new Map<string, WorkerEntry>();
    const folders: WorkersFolder[] = [];
    const realDirs = await Promise.all(this.options.workersDirs.map((d) => realpath(d).catch(() => path.resolve(d))));
    for (const dir of this.options.workersDirs) {
      let realDir: string;
      let names: string[];
      try {
        realDir = await realpath(dir);
        names = (await readdir(realDir)).sort();
      } catch (error) {
        // A missing folder is fine (the user workers folder until its first worker): it holds none.
        this.options.log.debug(`workers folder ${dir} unreadable: ${String(error)}`);
        folders.push({ dir, exists: false, workers: 0 });
        continue;
      }
      let count = 0;
      for (const name of names) {
        if (!isWorkerFileName(name)) continue;
        const entry = await this.describe(realDir, name, realDirs).catch(() => undefined);
        if (!entry) continue;
        count++;
        const existing = byName.get(name);
        if (existing) (existing.shadows ??= []).push(entry.path);
        else byName.set(name, entry);
      }
      folders.push({ dir, exists: true, workers: count });
    }
    return { workers: [...byName.values()], folders };
  }

  /** Names for an error message's "available workers" list. */
  async names(): Promise<string[]> {
    return (await this.list()).map((w) => w.name);
  }

  /**
   * A worker name (or a path inside a workers folder) to its real path. Refuses `..`, absolute
   * paths elsewhere and symlinks leading out of every workers folder (PATH_OUTSIDE_ROOT).
   */
  async resolveWorker(worker: string): Promise<{ name: string; path: string }> {
    const dirs = this.options.workersDirs;
    if (worker.trim() === '')
      throw new MonitorError('INVALID_INPUT', 'The worker name is empty.', { hint: await this.availableHint() });
    const base = path.basename(worker);
    if (!isWorkerFileName(base)) {
      throw new ScriptError(
        'WORKER_NOT_FOUND',
        `"${worker}" is not a worker: names starting with "_" or "." are helper modules, and documents are not run.`,
        { hint: await this.availableHint() },
      );
    }
    if (worker.split(/[\\/]/).includes('..')) {
      throw new MonitorError(
        'PATH_OUTSIDE_ROOT',
        `The worker "${worker}" climbs out of the workers folder with "..".`,
        {
          hint: `Name a worker by its file name, as list_workers shows it. ${await this.availableHint()}`,
        },
      );
    }
    for (const dir of dirs) {
      let real: string;
      try {
        real = await resolveInsideRoots(worker, dirs, {
          base: dir,
          what: 'worker',
          missingCode: 'WORKER_NOT_FOUND',
          widen: '--workers-dir or "workersDirs" in the config file',
          rules: this.pathRules,
        });
      } catch (error) {
        if (isMonitorError(error) && error.code === 'WORKER_NOT_FOUND') continue;
        throw error;
      }
      if (!(await stat(real)).isFile()) continue;
      return { name: worker, path: real };
    }
    throw new ScriptError('WORKER_NOT_FOUND', `No worker "${worker}" in ${dirs.join(', ')}.`, {
      hint: await this.availableHint(),
    });
  }

  /**
   * The plan for a worker: its interpreter by extension, or the file itself when it is executable.
   * `check`: a dry run, whose interpreter is only located (see InterpreterResolver.locate).
   */
  async planWorker(worker: string, check = false): Promise<LaunchPlan> {
    const resolved = await this.resolveWorker(worker);
    const head = await readHead(resolved.path);
    const header = parseWorkerHeader(head);
    const byExtension = this.interpreterFor(resolved.name) ?? this.interpreterFor(resolved.path);
    const mode = (await stat(resolved.path)).mode;
    // Windows runs no `#!` line: the server reads it (`/usr/bin/env python3` → python3), as cross-spawn does.
    const shebang =
      byExtension === undefined && !this.platform.runsShebangs && !this.platform.isRunnable(resolved.path, mode)
        ? shebangCommand(head)
        : undefined;
    const interpreter = byExtension ?? shebang?.[0];
    if (interpreter !== undefined) {
      const { resolver } = this.options;
      const file = await (check ? resolver.locate(interpreter) : resolver.resolve(interpreter));
      const isolated = header.isolated && PYTHON_INTERPRETER.test(interpreter);
      const helpers = await this.helperAccess(resolved.path, isolated);
      // -s: no user site-packages (a HOME holding a .pth file ran code); -E: no PYTHON* variables
      // (outside the helpers' folder the environment is cleared of them instead: see helpers.ts).
      const flags = isolated ? (helpers?.isolatedEnv ? ['-s'] : ISOLATED_PYTHON_FLAGS) : [];
      return {
        file,
        prefixArgs: [...(shebang?.slice(1) ?? []), ...flags, resolved.path],
        display: worker,
        interpreter,
        declaredEnv: header.env,
        warm: header.warm,
        packFiles: header.pack === 'files',
        ...(helpers ? { helpers } : {}),
      };
    }
    if (!this.platform.isRunnable(resolved.path, mode)) {
      throw new MonitorError(
        'INVALID_INPUT',
        `The worker "${worker}" has no known extension and is not executable, so there is no way to run it.`,
        {
          hint: `Known extensions: ${Object.keys(this.options.interpreters).join(', ')}. The user can mark the file executable (chmod +x) or map its extension in the config file ("script": {"interpreters": {...}}).`,
        },
      );
    }
    const helpers = await this.helperAccess(resolved.path, false);
    return {
      file: resolved.path,
      prefixArgs: [],
      display: worker,
      interpreter: 'executable',
      declaredEnv: header.env,
      warm: header.warm,
      packFiles: header.pack === 'files',
      ...(helpers ? { helpers } : {}),
    };
  }

  /** How the worker at `real` reaches the helpers; an isolated Python worker in their own folder needs nothing (-E stays). */
  private async helperAccess(real: string, isolated: boolean): Promise<HelperAccess | undefined> {
    const dir = this.options.helpersDir;
    if (dir === undefined) return undefined;
    const realDir = await realpath(dir).catch(() => path.resolve(dir));
    const rules = this.pathRules;
    const besideHelpers = comparable(path.dirname(real), rules) === comparable(realDir, rules);
    if (isolated && besideHelpers) return undefined;
    return { dir: realDir, delimiter: this.platform.path.delimiter, isolatedEnv: isolated };
  }

  /** The plan for an arbitrary command: only one the user allowed by name or absolute path. */
  async planCommand(command: string): Promise<LaunchPlan> {
    const allowed = this.options.allowCommands;
    if (allowed.length === 0) {
      throw new ScriptError(
        'COMMAND_NOT_ALLOWED',
        `Running arbitrary commands ("${command}") is turned off on this server.`,
        {
          hint: 'Use a worker instead (list_workers shows them). The user can allow specific executables with --allow-command NAME or "allowCommands" in the config file.',
        },
      );
    }
    if (!allowed.includes(command)) {
      throw new ScriptError('COMMAND_NOT_ALLOWED', `The command "${command}" is not in the allowed list.`, {
        hint: `Allowed commands: ${allowed.join(', ')}. Give one of these exactly, or use a worker (list_workers).`,
      });
    }
    const file = await findExecutable(command, this.options.searchPath, { platform: this.platform });
    if (file === undefined) {
      throw new ScriptError(
        'SPAWN_FAILED',
        `The allowed command "${command}" was not found${command.includes('/') ? '' : ' on PATH'} or is not executable.`,
        {
          hint: 'Ask the user to install it or to fix the allowCommands entry (a name on PATH or an absolute path).',
        },
      );
    }
    return {
      file,
      prefixArgs: [],
      display: command,
      interpreter: 'executable',
      declaredEnv: [],
      warm: false,
      packFiles: false,
    };
  }

  async plan(spec: { worker?: string | undefined; command?: string | undefined }, check = false): Promise<LaunchPlan> {
    if (spec.worker !== undefined) return this.planWorker(spec.worker, check);
    if (spec.command !== undefined) return this.planCommand(spec.command);
    throw new MonitorError('INVALID_INPUT', 'Name a worker (or, if the user allowed commands, a command) to run.', {
      hint: await this.availableHint(),
    });
  }

  private interpreterFor(file: string): string | undefined {
    const ext = path.extname(file);
    if (ext === '') return undefined;
    return this.options.interpreters[ext] ?? this.options.interpreters[ext.toLowerCase()];
  }

  private async describe(realDir: string, name: string, realDirs: readonly string[]): Promise<WorkerEntry | undefined> {
    const real = await realpath(path.join(realDir, name));
    if (!realDirs.some((dir) => isInside(dir, real, this.pathRules))) {
      this.options.log.debug(`worker ${name} in ${realDir} links outside the folder; not listed`);
      return undefined;
    }
    const info = await stat(real);
    if (!info.isFile()) return undefined;
    const head = await readHead(real);
    const interpreter =
      this.interpreterFor(name) ??
      this.interpreterFor(real) ??
      (this.platform.isRunnable(real, info.mode)
        ? 'executable'
        : this.platform.runsShebangs
          ? undefined
          : shebangCommand(head)?.[0]);
    if (interpreter === undefined) return undefined;
    return { name, dir: realDir, path: real, interpreter, header: parseWorkerHeader(head) };
  }

  private async availableHint(): Promise<string> {
    const names = await this.names().catch(() => []);
    return names.length > 0
      ? `Available workers: ${names.join(', ')} (list_workers describes each).`
      : `No workers found in ${this.options.workersDirs.join(', ')}; the user can add a folder with --workers-dir or "workersDirs".`;
  }
}

/**
 * The program a `#!` line names, with its arguments: `#!/usr/bin/env python3` → [python3],
 * `#!/bin/bash -e` → [bash, -e]. Only where the system does not read the line itself (Windows).
 */
export function shebangCommand(head: string): string[] | undefined {
  const line = /^#!([^\r\n]*)/.exec(head)?.[1]?.trim();
  if (!line) return undefined;
  const [program, ...args] = line.split(/\s+/);
  if (program === undefined) return undefined;
  const name = program.split('/').pop() ?? program;
  if (name === 'env') {
    const [envProgram, ...envArgs] = args.filter((arg) => arg !== '-S');
    return envProgram === undefined ? undefined : [envProgram, ...envArgs];
  }
  return name === '' ? undefined : [name, ...args];
}

async function readHead(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(HEADER_SCAN_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}
