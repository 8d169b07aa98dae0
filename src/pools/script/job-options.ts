import { stat } from 'node:fs/promises';
import * as z from 'zod';
import { MonitorError } from '../../errors.js';
import { type PathRules, resolveInsideRoots } from '../../paths.js';
import type { WorkerCatalog } from './catalog.js';
import type { RunPlan } from './launch.js';
import { MAX_PACK } from './pack.js';
import { addHelperEnv } from './helpers.js';

/**
 * What a script job stores (its options, its tasks' inputs), checked the same way when
 * run_script_batch accepts them and when the pool reads them back; and the run plan worked out
 * from them.
 */

/** A job's options as run_script_batch stores them: enough to run its tasks again after a restart. */
export const scriptJobOptionsSchema = z.object({
  worker: z.string().min(1).optional(),
  command: z.string().min(1).optional(),
  /** Absolute, checked against the allowed roots at submit and again when the job (re)starts. */
  cwd: z.string().min(1),
  env: z.record(z.string(), z.string()).optional(),
  timeout_seconds: z.number().positive(),
  /** Tasks go to warm processes (see warm.ts); absent (a job from before warm workers) means cold. */
  warm: z.boolean().optional(),
  /** Cold runs take up to this many inputs each, their output split per input (see pack.ts). */
  pack: z.number().int().min(2).max(MAX_PACK).optional(),
});
export type ScriptJobOptions = z.infer<typeof scriptJobOptionsSchema>;

/**
 * One task's input: arguments, and at most one of stdin text or a JSON value (sent on stdin). The
 * one schema for both what run_script_batch accepts and what the pool reads back from the store.
 */
export const scriptTaskInputSchema = z
  .strictObject({
    args: z
      .array(z.string())
      .optional()
      .describe('Arguments after the script, passed literally (usually file paths relative to cwd).'),
    stdin: z.string().optional().describe('Text on stdin.'),
    json: z.unknown().optional().describe('A JSON value sent on stdin as one line (instead of stdin).'),
  })
  .describe('One task; {} runs the worker with no input.');
export type ScriptTaskInput = z.infer<typeof scriptTaskInputSchema>;

/**
 * Checks a job's options and works out how its tasks start: the worker or command resolved (inside
 * a workers folder / on the allowlist), the interpreter found, the cwd inside an allowed root.
 */
export async function prepareRun(
  options: ScriptJobOptions,
  context: {
    catalog: WorkerCatalog;
    allowedRoots: readonly string[];
    /** The environment workers start from (the server's own); PATH falls back to searchPath. */
    baseEnv: Readonly<Record<string, string | undefined>>;
    searchPath: string;
    /** A dry run (a dispatch's check): nothing waits for a process start (see InterpreterResolver.locate). */
    check?: boolean;
  },
): Promise<RunPlan> {
  const launch = await context.catalog.plan({ worker: options.worker, command: options.command }, context.check);
  const cwd = await resolveCwd(options.cwd, context.allowedRoots, context.catalog.pathRules);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(context.baseEnv)) if (value !== undefined) env[key] = value;
  env.PATH ??= context.searchPath;
  Object.assign(env, options.env);
  addHelperEnv(env, launch.helpers);
  // A worker that no longer declares warm (edited since the job was submitted) runs cold; one that no longer declares pack, an input per process.
  const warm = options.warm === true && launch.warm;
  const pack = options.pack !== undefined && !warm && launch.packFiles;
  return { launch, cwd, env, timeoutMs: Math.round(options.timeout_seconds * 1000), warm, pack };
}

export async function resolveCwd(cwd: string, allowedRoots: readonly string[], rules: PathRules): Promise<string> {
  const real = await resolveInsideRoots(cwd, allowedRoots, { what: 'cwd', rules });
  if (!(await stat(real)).isDirectory()) {
    throw new MonitorError('INVALID_INPUT', `The cwd "${cwd}" is not a folder.`, {
      hint: `Give a folder inside ${allowedRoots.join(', ')}.`,
    });
  }
  return real;
}

/** A task's input as the store holds it, checked again (a later stage's `upstream` name left out). */
export function parseTaskInput(stored: unknown): ScriptTaskInput {
  const hint = 'Each input is {args?: string[], stdin?: string} or {args?: string[], json?: any}.';
  // `upstream` (what a later stage's task is named after) is stored, never given by a caller.
  const raw = { ...((stored ?? {}) as Record<string, unknown>) };
  delete raw.upstream;
  const parsed = scriptTaskInputSchema.safeParse(raw);
  if (!parsed.success)
    throw new MonitorError('INVALID_INPUT', `Task input is not readable: ${z.prettifyError(parsed.error)}`, { hint });
  if (parsed.data.stdin !== undefined && parsed.data.json !== undefined) {
    throw new MonitorError('INVALID_INPUT', 'Task input has both stdin and json, but json is sent on stdin.', { hint });
  }
  return parsed.data;
}
