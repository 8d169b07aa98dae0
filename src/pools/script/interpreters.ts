import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { LINUX, type Platform } from '../../platform/index.js';
import { ScriptError } from './errors.js';
import type { Logger } from '../../log.js';

/** How executables are found: the platform's rules, and (for tests of another system's rules) its file checks. */
export interface ExecutableLookup {
  platform: Platform;
  /** Whether `file` is a file this system may run; default: stat and the platform's rules. */
  isExecutable?: (file: string) => Promise<boolean>;
}

/**
 * The first executable file called `name` in the `searchPath` folders, or undefined. On Windows a
 * name without a runnable extension is looked for with each of PATHEXT's (`py` → `py.exe`), as
 * cross-spawn does; a stand-in (a Microsoft Store alias, WSL's bash) is passed over.
 */
export async function findExecutable(
  name: string,
  searchPath: string,
  lookup: ExecutableLookup = { platform: LINUX },
): Promise<string | undefined> {
  const { platform } = lookup;
  const api = platform.path;
  const runnable = lookup.isExecutable ?? ((file: string) => isExecutableFile(file, platform));
  const usable = async (file: string): Promise<boolean> => !platform.isStandIn(file) && (await runnable(file));
  if (name.includes('/') || name.includes(api.sep)) {
    if (!api.isAbsolute(name)) return undefined;
    for (const candidate of platform.executableNames(name)) if (await usable(candidate)) return candidate;
    return undefined;
  }
  for (const dir of searchPath.split(api.delimiter)) {
    if (dir === '' || !api.isAbsolute(dir)) continue;
    for (const candidate of platform.executableNames(name)) {
      const file = api.join(dir, candidate);
      if (await usable(file)) return file;
    }
  }
  return undefined;
}

export async function isExecutableFile(file: string, platform: Platform = LINUX): Promise<boolean> {
  try {
    const info = await stat(file);
    // The mode bits too: for root, access(X_OK) passes on files nobody may execute.
    if (!info.isFile() || !platform.isRunnable(file, info.mode)) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Python, or Windows's py launcher: asked once where the real interpreter is. */
const PYTHON_NAME = /^(python[0-9.]*|py)(\.exe)?$/i;

export interface InterpreterResolverOptions {
  searchPath: string;
  /** The node binary for `node` (the running server's own, so no PATH lookup or version manager shim). */
  nodePath: string;
  /** Environment for the one-off probe (PATH and any pyenv/virtualenv variables matter). */
  env: Readonly<Record<string, string | undefined>>;
  log: Logger;
  /** Where interpreters go by other names (python3 is `py` on Windows); Linux when not given. */
  lookup?: ExecutableLookup;
}

/**
 * Turns an interpreter name into the executable to spawn, once per name. Version-manager shims
 * (pyenv's `python3` costs ~330 ms a start against ~67 ms for the real one) would otherwise be paid
 * by every task, so Python is asked once where it really lives.
 */
export class InterpreterResolver {
  private readonly options: InterpreterResolverOptions;
  private readonly cache = new Map<string, Promise<string>>();
  private readonly located = new Map<string, Promise<string>>();

  constructor(options: InterpreterResolverOptions) {
    this.options = options;
  }

  resolve(name: string): Promise<string> {
    return once(this.cache, name, async () => {
      const found = await this.locate(name);
      const platform = this.options.lookup?.platform ?? LINUX;
      return PYTHON_NAME.test(platform.path.basename(found)) ? this.realPython(found) : found;
    });
  }

  /**
   * Where `name` is on the search path (found once), without asking Python where it really lives:
   * enough to tell that a task can start. A dispatch checks this before it returns its job handle;
   * the Python probe (a process start, ~330 ms through a pyenv shim) waits for the first task.
   */
  locate(name: string): Promise<string> {
    return once(this.located, name, () => this.lookUp(name));
  }

  private async lookUp(name: string): Promise<string> {
    const lookup = this.options.lookup ?? { platform: LINUX };
    const wanted = name === 'node' ? this.options.nodePath : name;
    let found: string | undefined;
    for (const candidate of name === 'node' ? [wanted] : lookup.platform.interpreterCandidates(wanted)) {
      found = await findExecutable(candidate, this.options.searchPath, lookup);
      if (found !== undefined) break;
    }
    if (found === undefined) {
      throw new ScriptError(
        'SPAWN_FAILED',
        `The interpreter "${wanted}" was not found${lookup.platform.path.isAbsolute(wanted) ? '' : ' on PATH'}.`,
        {
          hint:
            lookup.platform.missingInterpreterHint(wanted) ??
            'Install it, or point the file extension at an installed interpreter in the config file, e.g. "script": {"interpreters": {".py": "/usr/bin/python3"}}.',
        },
      );
    }
    return found;
  }

  /** Asks the (possibly shimmed) python for sys.executable; falls back to the shim if that fails. */
  private async realPython(found: string): Promise<string> {
    // execa is loaded here, when first needed: it costs the server's start ~80 ms.
    const { execa } = await import('execa');
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
    if (
      result.exitCode === 0 &&
      (this.options.lookup?.platform ?? LINUX).path.isAbsolute(real) &&
      (await isExecutableFile(real, this.options.lookup?.platform))
    ) {
      if (real !== found) this.options.log.debug(`interpreter ${found} runs as ${real}`);
      return real;
    }
    this.options.log.warn(
      `could not ask ${found} for its real path (exit ${String(result.exitCode)}); every task pays its start-up cost`,
    );
    return found;
  }
}

/** `cache`'s promise for `key`, made by `make` the first time; a failure is not remembered (the user may install the interpreter and try again). */
function once(cache: Map<string, Promise<string>>, key: string, make: () => Promise<string>): Promise<string> {
  let pending = cache.get(key);
  if (!pending) {
    pending = make();
    pending.catch(() => cache.delete(key));
    cache.set(key, pending);
  }
  return pending;
}
