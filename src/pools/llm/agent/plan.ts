import path from 'node:path';
import { MonitorError } from '../../../errors.js';
import { isInside, LINUX_PATHS, resolveRoots } from '../../../paths.js';
import { type ChecksRequest, planChecks } from '../checks/plan.js';
import { resolveForJob } from '../plan-context.js';
import { tooManyTasks } from '../plan-chunks.js';
import type { LlmJobPlan, LlmPlanContext } from '../plan-types.js';
import { upstreamInputs } from '../plan-prompts.js';
import { reduceStage } from '../plan.js';
import { LLM_KIND } from '../facts.js';
import { AGENTS_PER_SLOT } from '../pool.js';
import type { LlmJobOptions, LlmTaskInput } from '../types.js';
import { type AgentJobOptions, DEFAULT_MAX_STEPS, MOST_STEPS } from './types.js';

/** What lmstudio_investigate asks for, before any of it is checked. */
export interface InvestigateRequest {
  tasks?: ReadonlyArray<{ id?: string | undefined; task: string; paths?: readonly string[] | undefined }> | undefined;
  model?: string | undefined;
  maxSteps?: number | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  jsonSchema?: Record<string, unknown> | undefined;
  /** Context the job needs, in tokens (plan-context.ts). */
  contextLength?: number | undefined;
  concurrency?: number | undefined;
  timeoutSeconds?: number | undefined;
  reduce?: { prompt: string; maxTokens?: number | undefined } | undefined;
  /** A later stage: one investigation per task of this job, the one task given its template. */
  upstream?: { jobId: string; labels: readonly string[] } | undefined;
  /** What each answer must pass to be verified, and where one that keeps failing goes. */
  checks?: ChecksRequest | undefined;
  escalateModel?: string | undefined;
}

/** Globs a task may give, each at most this long; more than this many is a sign of a list of files better given as a folder. */
const MOST_PATHS = 64;

/**
 * Turns an lmstudio_investigate request into a job of investigations (one task each, or one per
 * upstream result), on the resolved model, as many at once as AGENTS_PER_SLOT × the slots serving it.
 */
export async function planInvestigation(request: InvestigateRequest, context: LlmPlanContext): Promise<LlmJobPlan> {
  const { settings } = context;
  const tasks = checkTasks(request);
  if (request.jsonSchema !== undefined) context.schemas.compile(request.jsonSchema);
  const maxSteps = request.maxSteps ?? DEFAULT_MAX_STEPS;
  if (!Number.isInteger(maxSteps) || maxSteps < 1 || maxSteps > MOST_STEPS)
    throw new MonitorError(
      'INVALID_INPUT',
      `max_steps must be a whole number from 1 to ${MOST_STEPS}, got ${maxSteps}.`,
      {
        hint: `Leave it out for ${DEFAULT_MAX_STEPS}; raise it for tasks that need to look at many files.`,
      },
    );
  for (const [i, task] of tasks.entries()) await checkPaths(task.paths, `tasks[${i}].paths`, context);

  const notes: string[] = [];
  const { resolved, capacity } = await resolveForJob(request, AGENTS_PER_SLOT, context, notes);
  const agent: AgentJobOptions = { max_steps: maxSteps };
  const options: LlmJobOptions = {
    model: resolved.model,
    timeout_seconds: request.timeoutSeconds ?? settings.requestTimeoutSeconds,
    agent,
  };
  if (request.maxTokens !== undefined) options.max_tokens = request.maxTokens;
  if (request.temperature !== undefined) options.temperature = request.temperature;
  if (request.jsonSchema !== undefined) options.json_schema = request.jsonSchema;
  const checks = await planChecks(
    request.checks,
    request.escalateModel,
    { model: resolved.model, jsonSchema: request.jsonSchema },
    context,
    notes,
  );
  if (checks !== undefined) options.checks = checks;

  let inputs: LlmTaskInput[];
  if (request.upstream !== undefined) {
    const [only] = tasks;
    options.template = only?.task ?? '';
    if (only?.paths !== undefined) agent.paths = [...only.paths];
    inputs = upstreamInputs(options.template, request.upstream.labels);
  } else
    inputs = tasks.map((t, i) => ({
      id: t.id ?? String(i + 1),
      task: t.task,
      ...(t.paths ? { paths: [...t.paths] } : {}),
    }));
  if (inputs.length > settings.maxTasks) throw tooManyTasks(settings.maxTasks, '');

  const concurrency = Math.max(1, request.concurrency ?? capacity);
  notes.unshift(
    `Model ${resolved.model} on ${resolved.endpoints.join(', ')}: ${inputs.length} investigation(s), up to ${concurrency} at once, at most ${maxSteps} steps each.`,
  );
  const plan: LlmJobPlan = { kind: LLM_KIND, inputs, options, concurrency, notes };
  if (request.upstream !== undefined) plan.after = { job: request.upstream.jobId, mode: 'each' };
  if (request.reduce !== undefined)
    plan.then = await reduceStage(request.reduce, resolved, options, context, concurrency);
  return plan;
}

type TaskRequest = NonNullable<InvestigateRequest['tasks']>[number];

function checkTasks(request: InvestigateRequest): readonly TaskRequest[] {
  const tasks = request.tasks ?? [];
  if (tasks.length === 0)
    throw new MonitorError('INVALID_INPUT', 'Nothing to investigate: give tasks (or tasks_file).', {
      hint: 'e.g. tasks: [{"task": "How does the auth module check tokens? Cite the lines.", "paths": ["src/auth/**"]}]',
    });
  if (request.upstream !== undefined && tasks.length !== 1)
    throw new MonitorError(
      'INVALID_INPUT',
      'from_job runs one investigation per result of that job: give exactly one task, its text a template.',
      {
        hint: 'e.g. tasks: [{"task": "Find why this test fails: {{output}}"}]; {{output}} is the whole output, {{id}} what it worked on, and a JSON output\'s fields fill {{field}}.',
      },
    );
  for (const [i, task] of tasks.entries()) {
    if (task.task.trim() === '')
      throw new MonitorError('INVALID_INPUT', `tasks[${i}].task is empty: say what to find out.`, {
        hint: 'e.g. "Which functions write to the cache, and under which lock?"',
      });
  }
  if (request.reduce !== undefined && request.reduce.prompt.trim() === '')
    throw new MonitorError('INVALID_INPUT', 'reduce needs a prompt: what to make of all the findings together.', {
      hint: 'e.g. reduce: "Merge these findings into one report, keeping the citations."',
    });
  return tasks;
}

/**
 * A task's paths must lie inside the allowed folders (their part before the first wildcard, with
 * `..` resolved); the agent's scope confines every call to them again, symlinks followed, at run time.
 */
async function checkPaths(paths: readonly string[] | undefined, where: string, context: LlmPlanContext): Promise<void> {
  if (paths === undefined) return;
  if (paths.length > MOST_PATHS)
    throw new MonitorError('INVALID_INPUT', `${where} has ${paths.length} entries; at most ${MOST_PATHS}.`, {
      hint: 'Give folders or globs (src/auth/**) rather than every file.',
    });
  const rules = context.pathRules ?? LINUX_PATHS;
  const api = rules.flavor === 'win32' ? path.win32 : path.posix;
  const roots = await resolveRoots(context.allowedRoots);
  const base = roots[0];
  for (const p of paths) {
    const fixed = p.split(/[*?{[]/, 1)[0] ?? '';
    const absolute = base === undefined ? undefined : api.resolve(base, fixed);
    if (p.includes('\0') || absolute === undefined || !roots.some((root) => isInside(root, absolute, rules)))
      throw new MonitorError('PATH_OUTSIDE_ROOT', `${where}: "${p}" is outside the allowed folders.`, {
        hint: `Give paths or globs inside ${roots.join(', ')} (relative to ${base ?? 'the first'}).`,
      });
  }
}
