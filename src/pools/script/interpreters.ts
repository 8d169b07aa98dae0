import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { ScriptError } from './errors.js';
import type { Logger } from '../../log.js';

/** The first executable file called `name` in the `searchPath` folders, or undefined. */
export async function findExecutable(name: string, searchPath: string): Promise<string | undefined> {
  if (name.includes('/')) return path.isAbsolute(name) && (await isExecutableFile(name)) ? name : undefined;
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '' || !path.isAbsolute(dir)) continue;
    const candidate = path.join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const info = await stat(file);
    // The mode bits too: for root, access(X_OK) passes on files nobody may execute.
    if (!info.isFile() || (info.mode & 0o111) === 0) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const PYTHON_NAME = /^python[0-9.]*$/;

export interface InterpreterResolverOptions {
  searchPath: string;
  /** The node binary for `node` (the running server's own, so no PATH lookup or version manager shim). */
  nodePath: string;
  /** Environment for the one-off probe (PATH and any pyenv/virtualenv variables matter). */
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
}

/**
 * Turns an interpreter name into the executable to spawn, once per name. Version-manager shims
 * (pyenv's `python3` costs ~330 ms a start against ~67 ms for the real one) would otherwise be paid
 * by every task, so Python is asked once where it really lives.
 */
export class InterpreterResolver {
  private readonly options: InterpreterResolverOptions;
  private readonly cache = new Map<string, Promise<string>>();

  constructor(options: InterpreterResolverOptions) {
    this.options = options;
  }

  resolve(name: string): Promise<string> {
    let pending = this.cache.get(name);
    if (!pending) {
      pending = this.lookUp(name);
      // A failure is not remembered: the user may install the interpreter and try again.
      pending.catch(() => this.cache.delete(name));
      this.cache.set(name, pending);
    }
    return pending;
  }

  private async lookUp(name: string): Promise<string> {
    const wanted = name === 'node' ? this.options.nodePath : name;
    const found = await findExecutable(wanted, this.options.searchPath);
    if (found === undefined) {
      throw new ScriptError('SPAWN_FAILED', `The interpreter "${wanted}" was not found${wanted.includes('/') ? '' : ' on PATH'}.`, {
        hint: 'Install it, or point the file extension at an installed interpreter in the config file, e.g. "script": {"interpreters": {".py": "/usr/bin/python3"}}.',
      });
    }
    if (!PYTHON_NAME.test(path.basename(found))) return found;
    return this.realPython(found);
  }

  /** Asks the (possibly shimmed) python for sys.executable; falls back to the shim if that fails. */
  private async realPython(found: string): Promise<string> {
    // -s -E: the probe must not run a sitecustomize or .pth file either.
    const result = await execa(found, ['-s', '-E', '-c', 'import sys; print(sys.executable)'], {
      reject: false,
      timeout: 15_000,
      env: { ...this.options.env, PATH: this.options.env.PATH ?? this.options.searchPath },
      extendEnv: false,
      stdin: 'ignore',
    });
    const real = typeof result.stdout === 'string' ? result.stdout.trim() : '';
    // Not realpath'd on purpose: a virtualenv's python is a symlink whose location selects the venv.
    if (result.exitCode === 0 && path.isAbsolute(real) && (await isExecutableFile(real))) {
      if (real !== found) this.options.log.debug(`interpreter ${found} runs as ${real}`);
      return real;
    }
    this.options.log.warn(`could not ask ${found} for its real path (exit ${String(result.exitCode)}); every task pays its start-up cost`);
    return found;
  }
}
