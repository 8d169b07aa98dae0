import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MonitorError } from '../errors.js';
import { nodeWorker, pythonWorker } from './worker-templates.js';

/** `monitor-mcp new-worker NAME [--node] [--dir DIR]`, parsed; the other arguments are the config's options. */
export interface NewWorkerCommand {
  /** The file name to write: NAME.py, or NAME.mjs for Node. */
  fileName: string;
  node: boolean;
  /** Where to write it (resolved); undefined: the user workers folder. */
  dir: string | undefined;
  /** What is left for the config (`--config FILE`, `--workers-dir DIR`, …). */
  configArgs: string[];
}

const USAGE =
  'monitor-mcp new-worker NAME [--node] [--dir DIR] [--config FILE] [--workers-dir DIR] writes a warm worker NAME.py (NAME.mjs with --node) to the user workers folder, or to DIR.';

/**
 * Python modules a worker file must not be named after: the worker's folder comes first on every
 * Python worker's sys.path there, so `json.py` would replace the real json for all of them (and
 * for _common). The usual ones, not the whole standard library.
 */
const PYTHON_MODULES = new Set(
  (
    'abc argparse array ast asyncio base64 bisect builtins codecs collections contextlib copy csv ctypes dataclasses ' +
    'datetime decimal difflib email encodings enum errno fnmatch fractions functools gc glob gzip hashlib heapq hmac ' +
    'html http importlib inspect io ipaddress itertools json keyword linecache locale logging lzma math mimetypes ' +
    'numbers operator os pathlib pickle platform posixpath pprint queue random re select selectors shlex shutil ' +
    'signal site sitecustomize socket sqlite3 ssl stat statistics string struct subprocess sys tarfile tempfile ' +
    'textwrap threading time timeit token tokenize traceback types typing unicodedata unittest urllib usercustomize ' +
    'uuid warnings weakref xml zipfile zlib'
  ).split(' '),
);

/** The config's options new-worker passes on: which config file, and more workers folders (for the name checks). */
const CONFIG_OPTIONS = ['--config', '--workers-dir'];

/** Parses the command's arguments; refuses a NAME that is not a plain identifier, and options it does not take. */
export function parseNewWorkerCommand(argv: readonly string[], cwd: string): NewWorkerCommand {
  let name: string | undefined;
  let node = false;
  let dir: string | undefined;
  const configArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--node') {
      node = true;
      continue;
    }
    if (!arg.startsWith('-')) {
      if (name !== undefined) throw usage(`One NAME only (got "${name}" and "${arg}").`);
      name = arg;
      continue;
    }
    const [flag = '', inline] = arg.split(/=(.*)/s);
    if (flag !== '--dir' && !CONFIG_OPTIONS.includes(flag)) throw usage(`Unknown option ${flag}.`);
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') throw usage(`${flag} needs a value.`);
    if (flag === '--dir') dir = path.resolve(cwd, value);
    else configArgs.push(flag, value);
  }
  if (name === undefined) throw usage('Name the worker.');
  return { fileName: workerFileName(name, node), node: node || name.endsWith('.mjs'), dir, configArgs };
}

/** NAME → its file name, or INVALID_INPUT saying why NAME cannot be one. */
export function workerFileName(name: string, node: boolean): string {
  const extension = /\.(py|mjs)$/.exec(name)?.[1];
  if (extension === 'py' && node) throw usage(`"${name}" is a Python file name, but --node asks for a Node worker.`);
  const language = extension === 'mjs' || node ? 'mjs' : 'py';
  const base = extension === undefined ? name : name.slice(0, -extension.length - 1);
  if (/[\\/]/.test(base) || base.includes('..'))
    throw usage(`"${name}" is a path; give a plain name (the worker is written to the workers folder).`);
  if (base.startsWith('_') || base.startsWith('.'))
    throw usage(`"${name}" starts with "${base[0] ?? ''}": such files are helper modules, never listed as workers.`);
  if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(base))
    throw usage(`"${name}" is not a name: use a letter, then letters, digits or "_" (at most 64), e.g. count_words.`);
  if (language === 'py' && PYTHON_MODULES.has(base.toLowerCase()))
    throw usage(
      `"${base}.py" would hide Python's own ${base} module from every Python worker in its folder; choose another name.`,
    );
  return `${base}.${language}`;
}

export interface NewWorkerRequest {
  command: NewWorkerCommand;
  /** The server's workers folders, in search order (the config's workersDirs). */
  workersDirs: readonly string[];
  bundledDir: string;
  userDir: string;
  /** `win32`: the by-hand command is PowerShell's. */
  os: string;
}

/**
 * Writes the worker (never over an existing file, never under a name another workers folder
 * already has) and returns what to tell the user: where it is, the run_script_batch call to try
 * it, and how to run it by hand.
 */
export async function writeNewWorker(request: NewWorkerRequest): Promise<{ file: string; report: string }> {
  const { command } = request;
  const dir = command.dir ?? request.userDir;
  const file = path.join(dir, command.fileName);
  for (const other of request.workersDirs) {
    if (path.resolve(other) === path.resolve(dir)) continue;
    const there = path.join(other, command.fileName);
    if (await exists(there))
      throw new MonitorError('INVALID_INPUT', `A worker named ${command.fileName} is already in ${other}: ${there}.`, {
        hint: 'Choose another name: when two workers folders hold the same name, only the one in the earlier folder runs.',
      });
  }
  const serveUrl = pathToFileURL(path.join(request.bundledDir, '_serve.mjs')).href;
  const text = command.node
    ? nodeWorker(stem(command.fileName), serveUrl)
    : pythonWorker(stem(command.fileName), request.bundledDir);
  await mkdir(dir, { recursive: true });
  try {
    await writeFile(file, text, { flag: 'wx', mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw new MonitorError('INVALID_INPUT', `${file} already exists; it was left as it is.`, {
        hint: 'Choose another name, or edit that file.',
      });
    throw error;
  }
  return { file, report: reportFor(request, file, serveUrl) };
}

function reportFor(request: NewWorkerRequest, file: string, serveUrl: string): string {
  const { command } = request;
  const listed = request.workersDirs.some((d) => path.resolve(d) === path.resolve(path.dirname(file)));
  const call = JSON.stringify({
    worker: command.fileName,
    inputs: [{ args: ['README.md'] }, { args: ['package.json'] }],
  });
  const win = request.os === 'win32';
  const byHand = command.node
    ? `${win ? `$env:MONITOR_SERVE = '${serveUrl}'; ` : ''}node ${file} README.md`
    : win
      ? `$env:PYTHONPATH = '${request.bundledDir}'; python ${file} README.md`
      : `PYTHONPATH=${request.bundledDir} python3 ${file} README.md`;
  return [
    `Wrote ${file}: a warm ${command.node ? 'Node' : 'Python'} worker that counts the lines, words and bytes of the files it is given.`,
    `Edit its handle() and the "monitor:" lines at its top (what list_workers tells Claude).`,
    '',
    listed
      ? 'Try it: ask Claude to call (list_workers shows it at once; no restart)'
      : `Its folder is not one the server searches: start the server with --workers-dir ${path.dirname(file)} (or add it to "workersDirs" in the config file), then ask Claude to call`,
    `  run_script_batch ${call}`,
    '  then collect_results with the job_id it returns.',
    '',
    `By hand: ${byHand}`,
    '',
  ].join('\n');
}

function stem(fileName: string): string {
  return fileName.replace(/\.(py|mjs)$/, '');
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function usage(problem: string): MonitorError {
  return new MonitorError('INVALID_INPUT', problem, { hint: USAGE });
}
