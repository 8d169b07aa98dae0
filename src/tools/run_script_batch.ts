import * as z from 'zod';
import type { SubmitRequest } from '../engine/engine.js';
import { MonitorError } from '../errors.js';
import { planJob, resolveCwd, SCRIPT_KIND, type ScriptJobOptions, type ScriptTaskInput } from '../pools/script/pool.js';
import { dispatchReply } from './collect_results.js';
import { defineTool } from './tool.js';

const MAX_TASKS = 10_000;
const MAX_TIMEOUT_SECONDS = 86_400;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const taskInputSchema = z
  .strictObject({
    args: z.array(z.string()).optional().describe('Command-line arguments after the script, passed literally (no shell: quotes, $, ; and * mean nothing special). Usually file paths relative to cwd.'),
    stdin: z.string().optional().describe('Text written to the worker\'s stdin.'),
    json: z.unknown().optional().describe('A JSON value written to stdin as one line of JSON (use instead of stdin, not with it); the worker sees MONITOR_STDIN_FORMAT=json.'),
  })
  .describe('One task: args and/or either stdin text or a json value. {} runs the worker with no input.');

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
    inputs: z.array(taskInputSchema).min(1, { error: 'inputs is empty: give at least one task, e.g. [{"args": ["src/a.ts"]}].' }).max(MAX_TASKS).describe(`The tasks, 1 to ${MAX_TASKS}; results keep this order's indices.`),
    concurrency: z.number().int().min(1, { error: 'concurrency must be a whole number from 1 up to the server maximum (script.maxConcurrency, 64 unless configured); omit it for the default (the number of CPUs).' }).optional().describe('Tasks of this job running at once. Default: the number of CPUs; at most the server\'s maximum (usually 64).'),
    timeout_seconds: z.number().positive({ error: 'timeout_seconds must be more than 0; omit it for the default (300 s unless configured).' }).max(MAX_TIMEOUT_SECONDS).optional().describe('Per task: a task running longer is killed, with its child processes. Default 300 unless configured.'),
    env: z.record(z.string(), z.string()).optional().describe('Environment variables added for every task (on top of the server\'s). Stored with the job: never put secrets here.'),
    cwd: z.string().min(1).optional().describe('Working folder of the tasks, where relative paths in args resolve. Must be inside the allowed roots; default the first allowed root (the project folder).'),
    label: z.string().max(200).optional().describe('A short name shown in list_jobs, e.g. "deps of src/".'),
    wait_seconds: z.number().min(0).optional().describe('Wait up to this many seconds for the job and return its first page of results in this reply (default 0: return the job_id at once; capped by the server, about 50 s).'),
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
    for (const name of Object.keys(env)) {
      if (!ENV_NAME.test(name)) {
        throw new MonitorError('INVALID_INPUT', `"${name}" is not a valid environment variable name.`, { hint: 'Use letters, digits and _ only, not starting with a digit.' });
      }
    }
    const inputs: ScriptTaskInput[] = args.inputs.map((input, index) => {
      if (input.stdin !== undefined && input.json !== undefined) {
        throw new MonitorError('INVALID_INPUT', `inputs[${index}] has both stdin and json, but json is delivered on stdin.`, {
          hint: 'Put everything the worker needs in json, or send text in stdin and pass the rest in args.',
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
