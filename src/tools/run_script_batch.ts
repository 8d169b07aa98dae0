import * as z from 'zod';
import type { SubmitRequest } from '../engine/engine.js';
import { MonitorError } from '../errors.js';
import { planJob, resolveCwd, SCRIPT_KIND, scriptTaskInputSchema, type ScriptJobOptions, type ScriptTaskInput } from '../pools/script/pool.js';
import { dispatchFields, dispatchReply } from './collect_results.js';
import { defineTool } from './tool.js';

const MAX_TASKS = 10_000;
const MAX_TIMEOUT_SECONDS = 86_400;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Variables that make an interpreter, the shell or the dynamic loader run code of the caller's
 * choosing (NODE_OPTIONS=--import=data:…, LD_PRELOAD, PYTHONSTARTUP, BASH_ENV, SHELLOPTS+PS4, …) or
 * pick which program runs (PATH): through `env` they would run anything, past allowCommands.
 * MONITOR_* are set by the server itself.
 */
const REFUSED_ENV = /^(LD_.*|DYLD_.*|NODE_OPTIONS|NODE_PATH|PYTHON.*|BASH_ENV|ENV|SHELLOPTS|BASHOPTS|PS4|PATH|PERL5.*|PERLLIB|RUBY.*|GLIBC_TUNABLES|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|MONITOR_.*)$/;

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

export const runScriptBatchTool = defineTool({
  name: 'run_script_batch',
  title: 'Run a worker script over many inputs in parallel',
  description: [
    'Runs one worker script (see list_workers) once per input, many at once in a local process pool, as one background job; returns a job_id at once. Collect the outputs with collect_results while you work on something else.',
    'Use it for mechanical work over many files: dependency analysis, code statistics, regex search with context, or any script the user put in a workers folder. Send file paths, not file contents: the worker reads the files.',
    'Each task\'s result value has exit_code, json (stdout parsed, when the worker printed JSON) or text (stdout, a preview when long), stderr_tail, stdout_bytes and truncated flags; large outputs are saved to files listed in the result. A non-zero exit is a failed task (NON_ZERO_EXIT) that still carries its output; a task over timeout_seconds is killed with its child processes (TIMEOUT).',
    'No shell is involved: args are passed exactly as given. The worker\'s environment adds MONITOR_JOB_ID, MONITOR_TASK_INDEX, MONITOR_ATTEMPT, MONITOR_STDIN_FORMAT (json, text or none) and MONITOR_OUTPUT_DIR.',
  ].join(' '),
  inputSchema: {
    worker: z.string().min(1).optional().describe('The worker to run, by the name list_workers shows, e.g. "code_stats.py". Give either worker or command.'),
    command: z.string().min(1).optional().describe('Instead of a worker: an executable the user explicitly allowed (allowCommands in the server config; off by default), named exactly as allowed, e.g. "rg".'),
    inputs: z.array(scriptTaskInputSchema).min(1, { error: 'inputs is empty: give at least one task, e.g. [{"args": ["src/a.ts"]}].' }).max(MAX_TASKS).describe(`The tasks, 1 to ${MAX_TASKS}; results keep this order's indices.`),
    concurrency: z.number().int().min(1, { error: 'concurrency must be a whole number from 1 up to the server maximum (script.maxConcurrency, 64 unless configured); omit it for the default (the number of CPUs).' }).optional().describe('Tasks of this job running at once. Default: the number of CPUs; at most the server\'s maximum (usually 64).'),
    timeout_seconds: z.number().positive({ error: 'timeout_seconds must be more than 0; omit it for the default (300 s unless configured).' }).max(MAX_TIMEOUT_SECONDS).optional().describe('Per task: a task running longer is killed, with its child processes. Default 300 unless configured.'),
    env: z.record(z.string(), z.string()).optional().describe('Environment variables added for every task (on top of the server\'s). Stored with the job: never put secrets here. Variables that change which code runs (PATH, NODE_OPTIONS, LD_*, PYTHON*, BASH_ENV, …) and MONITOR_* are refused.'),
    cwd: z.string().min(1).optional().describe('Working folder of the tasks, where relative paths in args resolve. Must be inside the allowed roots; default the first allowed root (the project folder).'),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const { config } = ctx;
    const catalog = ctx.services.workers;
    if ((args.worker === undefined) === (args.command === undefined)) {
      const names = await catalog.names().catch(() => []);
      throw new MonitorError('INVALID_INPUT', args.worker === undefined ? 'Name the worker to run.' : 'Give either worker or command, not both.', {
        hint: `Pass "worker" with one of: ${names.join(', ') || '(none found)'} (list_workers describes them). "command" works only for executables the user allowed.`,
      });
    }
    const max = config.script.maxConcurrency;
    const concurrency = args.concurrency ?? config.script.defaultConcurrency;
    if (concurrency > max) {
      throw new MonitorError('INVALID_INPUT', `concurrency must be from 1 to ${max}, got ${concurrency}.`, {
        hint: `Use at most ${max} (the server's script.maxConcurrency), or omit it for the default ${config.script.defaultConcurrency}.`,
      });
    }
    const env = args.env ?? {};
    for (const [name, value] of Object.entries(env)) checkEnvEntry(name, value);
    const inputs: ScriptTaskInput[] = args.inputs.map((input, index) => {
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
    });

    const cwd = await resolveCwd(args.cwd ?? config.allowedRoots[0] ?? '.', config.allowedRoots);
    const options: ScriptJobOptions = { cwd, timeout_seconds: args.timeout_seconds ?? config.script.defaultTimeoutSeconds };
    if (args.worker !== undefined) options.worker = args.worker;
    if (args.command !== undefined) options.command = args.command;
    if (Object.keys(env).length > 0) options.env = env;
    // Everything is checked before anything is submitted: a bad request leaves no job behind.
    await planJob(options, { catalog, allowedRoots: config.allowedRoots, baseEnv: {}, searchPath: config.script.searchPath });

    const submit: SubmitRequest = { kind: SCRIPT_KIND, inputs, options, concurrency };
    if (args.label !== undefined) submit.label = args.label;
    const job = await ctx.engine.submit(submit);
    return dispatchReply(ctx, job.id, args.wait_seconds);
  },
});
