import type { CoreConfig } from '../../config/core.js';
import type { JobPlan } from '../../engine/types.js';
import { MonitorError } from '../../errors.js';
import type { WorkerCatalog } from './catalog.js';
import { prepareRun, resolveCwd, SCRIPT_KIND, type ScriptJobOptions, type ScriptTaskInput } from './pool.js';
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
}

export interface ScriptPlanContext {
  config: CoreConfig & ScriptConfig;
  catalog: WorkerCatalog;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Variables that make an interpreter, the shell or the dynamic loader run code of the caller's
 * choosing (NODE_OPTIONS=--import=data:…, LD_PRELOAD, PYTHONSTARTUP, BASH_ENV, SHELLOPTS+PS4, …) or
 * pick which program runs (PATH): through `env` they would run anything, past allowCommands.
 * MONITOR_* are set by the server itself.
 */
const REFUSED_ENV = /^(LD_.*|DYLD_.*|NODE_OPTIONS|NODE_PATH|PYTHON.*|BASH_ENV|ENV|SHELLOPTS|BASHOPTS|PS4|PATH|PERL5.*|PERLLIB|RUBY.*|GLIBC_TUNABLES|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|MONITOR_.*)$/;

/**
 * Checks a run_script_batch request and makes the job: the worker (or allowed command) resolved
 * with its interpreter, the cwd inside the allowed folders, env and inputs checked. Everything is
 * checked before anything is submitted: a bad request leaves no job behind.
 */
export async function planScriptJob(request: ScriptJobRequest, context: ScriptPlanContext): Promise<JobPlan> {
  const { config, catalog } = context;
  if ((request.worker === undefined) === (request.command === undefined)) {
    const names = await catalog.names().catch(() => []);
    throw new MonitorError('INVALID_INPUT', request.worker === undefined ? 'Name the worker to run.' : 'Give either worker or command, not both.', {
      hint: `Pass "worker" with one of: ${names.join(', ') || '(none found)'} (list_workers describes them). "command" works only for executables the user allowed.`,
    });
  }
  const max = config.script.maxConcurrency;
  const concurrency = request.concurrency ?? config.script.defaultConcurrency;
  if (concurrency > max) {
    throw new MonitorError('INVALID_INPUT', `concurrency must be from 1 to ${max}, got ${concurrency}.`, {
      hint: `Use at most ${max} (the server's script.maxConcurrency), or omit it for the default ${config.script.defaultConcurrency}.`,
    });
  }
  const env = request.env ?? {};
  for (const [name, value] of Object.entries(env)) checkEnvEntry(name, value);
  const inputs = request.inputs.map(checkInput);

  const cwd = await resolveCwd(request.cwd ?? config.allowedRoots[0] ?? '.', config.allowedRoots);
  const options: ScriptJobOptions = { cwd, timeout_seconds: request.timeoutSeconds ?? config.script.defaultTimeoutSeconds };
  if (request.worker !== undefined) options.worker = request.worker;
  if (request.command !== undefined) options.command = request.command;
  if (Object.keys(env).length > 0) options.env = { ...env };
  // A dry run of what each task does first: the worker or command and its interpreter must resolve.
  await prepareRun(options, { catalog, allowedRoots: config.allowedRoots, baseEnv: {}, searchPath: config.script.searchPath });
  return { kind: SCRIPT_KIND, inputs, options, concurrency };
}

/** Throws INVALID_INPUT for an env entry the tool must not pass on. */
function checkEnvEntry(name: string, value: string): void {
  if (!ENV_NAME.test(name)) {
    throw new MonitorError('INVALID_INPUT', `"${name}" is not a valid environment variable name.`, { hint: 'Use letters, digits and _ only, not starting with a digit.' });
  }
  if (REFUSED_ENV.test(name.toUpperCase())) {
    throw new MonitorError('INVALID_INPUT', `env cannot set ${name}: it changes which code the worker's interpreter, shell or loader runs${name.toUpperCase().startsWith('MONITOR_') ? ' (MONITOR_* are set by the server)' : ''}.`, {
      hint: 'Leave it out and pass what the worker needs as args, stdin/json or a plain variable of its own (e.g. MY_WORKER_MODE). The user controls the server\'s own environment.',
    });
  }
  if (value.includes('\0')) {
    throw new MonitorError('INVALID_INPUT', `The value of env ${name} contains a NUL byte, which no process environment can hold.`, { hint: 'Remove the NUL byte, or send binary data on stdin.' });
  }
}

/** One task as stored: only the fields it gives, checked for what would fail every attempt. */
function checkInput(input: ScriptTaskInput, index: number): ScriptTaskInput {
  if (input.stdin !== undefined && input.json !== undefined) {
    throw new MonitorError('INVALID_INPUT', `inputs[${index}] has both stdin and json, but json is delivered on stdin.`, {
      hint: 'Put everything the worker needs in json, or send text in stdin and pass the rest in args.',
    });
  }
  // A process argument is a C string: a NUL byte would fail every attempt at spawn time. (stdin is a byte stream: NUL is fine there.)
  const nulArg = input.args?.findIndex((arg) => arg.includes('\0')) ?? -1;
  if (nulArg !== -1) {
    throw new MonitorError('INVALID_INPUT', `inputs[${index}].args[${nulArg}] contains a NUL byte, which a process argument cannot hold.`, {
      hint: 'Remove the NUL byte; to pass binary data, send it on stdin (or as json).',
    });
  }
  const task: ScriptTaskInput = {};
  if (input.args !== undefined) task.args = input.args;
  if (input.stdin !== undefined) task.stdin = input.stdin;
  if (input.json !== undefined) task.json = input.json;
  return task;
}
