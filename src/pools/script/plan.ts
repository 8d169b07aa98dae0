import type { CoreConfig } from '../../config/core.js';
import type { JobPlan } from '../../engine/types.js';
import { MonitorError } from '../../errors.js';
import type { WorkerCatalog } from './catalog.js';
import { MAX_PACK, packableArgs } from './pack.js';
import { prepareRun, resolveCwd, type ScriptJobOptions, type ScriptTaskInput } from './job-options.js';
import { SCRIPT_KIND } from './facts.js';
import type { ScriptConfig } from './settings.js';

/** What run_script_batch asks for, before any of it is checked. */
export interface ScriptJobRequest {
  worker?: string | undefined;
  command?: string | undefined;
  inputs: readonly ScriptTaskInput[];
  concurrency?: number | undefined;
  timeoutSeconds?: number | undefined;
  env?: Readonly<Record<string, string>> | undefined;
  cwd?: string | undefined;
  /** Warm processes (default: when the worker declares `warm: yes`, unless `pack`); false asks for a process per task. */
  warm?: boolean | undefined;
  /** Up to this many inputs per cold process, the output split per input (a worker that declares `pack: files`; see pack.ts). */
  pack?: number | undefined;
}

export interface ScriptPlanContext {
  config: CoreConfig & ScriptConfig;
  catalog: WorkerCatalog;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * What `env` may set without the user's say: variables that tune how a program runs (locale, time
 * zone, colours, thread counts, Python's output encoding) but cannot make it load or run other
 * code. A denylist let HOME (a .pth file in a fake user site), XDG_CONFIG_HOME, GIT_SSH_COMMAND,
 * GIT_CONFIG_*, EDITOR, PAGER and OPENSSL_CONF through, each of which runs code of the caller's
 * choosing; so only these pass, plus what the user allows (`allowEnv`) and what the worker itself
 * declares it reads (`# monitor: env:`).
 */
export const HARMLESS_ENV: readonly string[] = [
  'LANG',
  'LANGUAGE',
  'LC_*',
  'TZ',
  'NO_COLOR',
  'FORCE_COLOR',
  'CLICOLOR',
  'COLUMNS',
  'LINES',
  'OMP_NUM_THREADS',
  'MKL_NUM_THREADS',
  'OPENBLAS_NUM_THREADS',
  'NUMEXPR_NUM_THREADS',
  'VECLIB_MAXIMUM_THREADS',
  'RAYON_NUM_THREADS',
  'GOMAXPROCS',
  'UV_THREADPOOL_SIZE',
  'PYTHONUNBUFFERED',
  'PYTHONIOENCODING',
  'PYTHONUTF8',
  'PYTHONHASHSEED',
  'PYTHONDONTWRITEBYTECODE',
];

/** A name against allowlist entries: exact (any case for the harmless ones), or `PREFIX_*`. */
function allowedBy(name: string, entries: readonly string[]): boolean {
  return entries.some((entry) => (entry.endsWith('*') ? name.startsWith(entry.slice(0, -1)) : name === entry));
}

/**
 * Checks a run_script_batch request and makes the job: the worker (or allowed command) resolved
 * with its interpreter, the cwd inside the allowed folders, env and inputs checked. Everything is
 * checked before anything is submitted: a bad request leaves no job behind.
 */
export async function planScriptJob(request: ScriptJobRequest, context: ScriptPlanContext): Promise<JobPlan> {
  const { config, catalog } = context;
  if ((request.worker === undefined) === (request.command === undefined)) {
    const names = await catalog.names().catch(() => []);
    throw new MonitorError(
      'INVALID_INPUT',
      request.worker === undefined ? 'Name the worker to run.' : 'Give either worker or command, not both.',
      {
        hint: `Pass "worker" with one of: ${names.join(', ') || '(none found)'} (list_workers describes them). "command" works only for executables the user allowed.`,
      },
    );
  }
  const max = config.script.maxConcurrency;
  const concurrency = request.concurrency ?? config.script.defaultConcurrency;
  if (concurrency > max) {
    throw new MonitorError('INVALID_INPUT', `concurrency must be from 1 to ${max}, got ${concurrency}.`, {
      hint: `Use at most ${max} (the server's script.maxConcurrency), or omit it for the default ${config.script.defaultConcurrency}.`,
    });
  }
  const env = request.env ?? {};
  for (const [name, value] of Object.entries(env)) checkEnvSyntax(name, value);
  const inputs = request.inputs.map(checkInput);

  const cwd = await resolveCwd(request.cwd ?? config.allowedRoots[0] ?? '.', config.allowedRoots, config.pathRules);
  const options: ScriptJobOptions = {
    cwd,
    timeout_seconds: request.timeoutSeconds ?? config.script.defaultTimeoutSeconds,
  };
  if (request.worker !== undefined) options.worker = request.worker;
  if (request.command !== undefined) options.command = request.command;
  // A dry run of what each task does first: the worker or command and its interpreter must be found.
  const run = await prepareRun(options, {
    catalog,
    allowedRoots: config.allowedRoots,
    baseEnv: {},
    searchPath: config.script.searchPath,
    check: true,
  });
  for (const name of Object.keys(env)) checkEnvAllowed(name, run.launch.declaredEnv, config.allowEnv);
  if (Object.keys(env).length > 0) options.env = { ...env };
  if (request.warm === true && !run.launch.warm) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${run.launch.display} cannot run warm: ${request.worker === undefined ? 'a command never does' : 'it does not declare "# monitor: warm: yes"'}.`,
      {
        hint: 'Omit warm (or pass warm: false) to run one process per task. A worker that serves many tasks in one process declares "# monitor: warm: yes" (list_workers shows warm: true).',
      },
    );
  }
  if (request.pack !== undefined) checkPack(request.pack, request, run.launch, inputs);
  // Stored as decided now: a resumed job runs the same way. Packing is for cold runs: it makes the job cold.
  options.warm = request.warm ?? (request.pack === undefined && run.launch.warm);
  if (request.pack !== undefined) options.pack = request.pack;
  return { kind: SCRIPT_KIND, inputs, options, concurrency };
}

/** Throws INVALID_INPUT unless the job's inputs can be packed `pack` to a process (see pack.ts). */
function checkPack(
  pack: number,
  request: ScriptJobRequest,
  launch: { display: string; packFiles: boolean },
  inputs: readonly ScriptTaskInput[],
): void {
  if (!(Number.isInteger(pack) && pack >= 2 && pack <= MAX_PACK)) {
    throw new MonitorError('INVALID_INPUT', `pack must be a whole number from 2 to ${MAX_PACK}, got ${pack}.`, {
      hint: 'Omit pack to run one input per process.',
    });
  }
  if (!launch.packFiles) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${launch.display} cannot pack inputs: ${request.worker === undefined ? 'a command never does' : 'it does not declare "# monitor: pack: files"'}.`,
      {
        hint: 'Omit pack. A worker that, given many file arguments, prints {"files": [one entry per argument, in order], ...} declares "# monitor: pack: files" (list_workers shows pack).',
      },
    );
  }
  if (request.warm === true) {
    throw new MonitorError(
      'INVALID_INPUT',
      'pack and warm: true do not go together: pack puts several inputs in one cold process, warm serves them one by one in long-lived processes.',
      {
        hint: 'Omit warm (pack makes the job cold), or omit pack: a warm worker pays no process start per input.',
      },
    );
  }
  const unpackable = inputs.findIndex((input) => packableArgs(input) === undefined);
  const input = inputs[unpackable];
  if (input) {
    const what = input.stdin !== undefined ? 'stdin' : input.json !== undefined ? 'json' : 'no args';
    throw new MonitorError(
      'INVALID_INPUT',
      `inputs[${unpackable}] has ${what}, but pack joins the inputs' args into one command line: every input needs args, and none stdin or json.`,
      {
        hint: 'Give each input its files as args, or omit pack.',
      },
    );
  }
}

/** Throws INVALID_INPUT for an env entry no process could take. */
function checkEnvSyntax(name: string, value: string): void {
  if (!ENV_NAME.test(name)) {
    throw new MonitorError('INVALID_INPUT', `"${name}" is not a valid environment variable name.`, {
      hint: 'Use letters, digits and _ only, not starting with a digit.',
    });
  }
  if (value.includes('\0')) {
    throw new MonitorError(
      'INVALID_INPUT',
      `The value of env ${name} contains a NUL byte, which no process environment can hold.`,
      { hint: 'Remove the NUL byte, or send binary data on stdin.' },
    );
  }
}

/** Throws INVALID_INPUT for a variable `env` may not set (see HARMLESS_ENV). */
function checkEnvAllowed(name: string, declared: readonly string[], userAllowed: readonly string[]): void {
  // The server's own, whatever any list says.
  if (name.toUpperCase().startsWith('MONITOR_')) {
    throw new MonitorError('INVALID_INPUT', `env cannot set ${name}: MONITOR_* variables are set by the server.`, {
      hint: 'Leave it out; the worker gets the MONITOR_* variables it needs from the server.',
    });
  }
  if (allowedBy(name, HARMLESS_ENV) || declared.includes(name) || allowedBy(name, userAllowed)) return;
  const declaredText = declared.length > 0 ? ` This worker declares ${declared.join(', ')}.` : '';
  throw new MonitorError(
    'INVALID_INPUT',
    `env cannot set ${name}: only variables that cannot change which code runs are passed (LANG, LC_*, TZ, thread counts, …), those the worker declares it reads, and those the user allows.${declaredText}`,
    {
      hint: `Leave it out and pass what the worker needs as args or stdin/json. A worker can declare the variables it reads with a "# monitor: env: NAME" header line; the user can allow more with --allow-env NAME or "allowEnv" in the config file.`,
    },
  );
}

/** One task as stored: only the fields it gives, checked for what would fail every attempt. */
function checkInput(input: ScriptTaskInput, index: number): ScriptTaskInput {
  if (input.stdin !== undefined && input.json !== undefined) {
    throw new MonitorError(
      'INVALID_INPUT',
      `inputs[${index}] has both stdin and json, but json is delivered on stdin.`,
      {
        hint: 'Put everything the worker needs in json, or send text in stdin and pass the rest in args.',
      },
    );
  }
  // A process argument is a C string: a NUL byte would fail every attempt at spawn time. (stdin is a byte stream: NUL is fine there.)
  const nulArg = input.args?.findIndex((arg) => arg.includes('\0')) ?? -1;
  if (nulArg !== -1) {
    throw new MonitorError(
      'INVALID_INPUT',
      `inputs[${index}].args[${nulArg}] contains a NUL byte, which a process argument cannot hold.`,
      {
        hint: 'Remove the NUL byte; to pass binary data, send it on stdin (or as json).',
      },
    );
  }
  const task: ScriptTaskInput = {};
  if (input.args !== undefined) task.args = input.args;
  if (input.stdin !== undefined) task.stdin = input.stdin;
  if (input.json !== undefined) task.json = input.json;
  return task;
}
