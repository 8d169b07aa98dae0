import type { JobPlan } from '../../engine/types.js';
import { MonitorError } from '../../errors.js';
import { planChecks } from './checks/plan.js';
import { resolveForJob } from './plan-context.js';
import { ASSUMED_CONTEXT_TOKENS, checkChunkTokens, tooManyTasks } from './plan-chunks.js';
import { templateInputs } from './plan-files.js';
import { defaultReducePrompt, groupInputs } from './plan-groups.js';
import { type Measured, measure, MEASURED_MARGIN } from './plan-measure.js';
import { promptInputs, upstreamInputs } from './plan-prompts.js';
import type { LlmJobPlan, LlmJobRequest, LlmPlanContext, ServedModel } from './plan-types.js';
import { LLM_KIND } from './facts.js';
import type { ResolvedModel } from './resolve.js';
import type { LlmSettings } from './settings.js';
import { CHUNK_BYTES_PER_TOKEN } from './template.js';
import type { LlmJobOptions, LlmTaskInput, ReduceOptions } from './types.js';

export type { LlmJobPlan, LlmJobRequest, LlmPlanContext } from './plan-types.js';

/**
 * Turns an lmstudio_complete request into tasks: one per prompt (plan-prompts.ts), or the template
 * filled from each item and/or file (files × items, files cut into chunks sized to the model's
 * context when asked: plan-files.ts), or files packed into as few prompts as fit (plan-groups.ts).
 * Resolves the model now (refusing when no endpoint serving it answers) and refuses a concurrency
 * above what those endpoints take together.
 */
export async function planLlmJob(request: LlmJobRequest, context: LlmPlanContext): Promise<LlmJobPlan> {
  const { settings } = context;
  checkRequest(request);
  if (request.jsonSchema !== undefined) context.schemas.compile(request.jsonSchema);
  if (request.chunkTokens !== undefined) checkChunkTokens(request.chunkTokens, settings.maxFileBytes);

  const notes: string[] = [];
  const { resolved, capacity } = await resolveForJob(request, 1, context, notes);
  const options = jobOptionsOf(request, resolved.model, settings);
  const checks = await planChecks(
    request.checks,
    request.escalateModel,
    { model: resolved.model, jsonSchema: request.jsonSchema },
    context,
    notes,
  );
  if (checks !== undefined) options.checks = checks;
  const made = await makeInputs(request, resolved, options, context, notes);
  const { inputs } = made;
  if (inputs.length > settings.maxTasks) throw tooManyTasks(settings.maxTasks, '');

  const concurrency = Math.max(1, request.concurrency ?? capacity);
  notes.unshift(`Model ${resolved.model} on ${resolved.endpoints.join(', ')}, up to ${concurrency} prompt(s) at once.`);
  const plan: LlmJobPlan = { kind: LLM_KIND, inputs, options, concurrency, notes };
  if (request.upstream !== undefined) plan.after = { job: request.upstream.jobId, mode: 'each' };
  if (made.reducePrompt !== undefined)
    plan.then = await reduceStage(
      { prompt: made.reducePrompt, maxTokens: request.reduce?.maxTokens },
      resolved,
      options,
      context,
      concurrency,
      made.ratio,
    );
  return plan;
}

/** The stage that merges a job's answers on the model once they are in (map → reduce), sized to the model's context. */
export async function reduceStage(
  asked: { prompt: string; maxTokens?: number | undefined },
  resolved: Pick<ResolvedModel, 'endpoints' | 'contextLength'>,
  options: LlmJobOptions,
  context: LlmPlanContext,
  parallel: number,
  measured?: Measured,
): Promise<JobPlan> {
  const ratio = measured ?? (await measure(asked.prompt, resolved.endpoints, options.model, context));
  const reduce: ReduceOptions = {
    prompt: asked.prompt,
    context_tokens: resolved.contextLength ?? ASSUMED_CONTEXT_TOKENS,
    bytes_per_token: ratio?.bytes ?? CHUNK_BYTES_PER_TOKEN * MEASURED_MARGIN,
    parallel,
  };
  // Not the map's max_tokens: that sizes one item's answer, and the merged one says more.
  if (asked.maxTokens !== undefined) reduce.max_tokens = asked.maxTokens;
  const stageOptions: LlmJobOptions = { ...options, reduce };
  delete stageOptions.agent;
  return { kind: LLM_KIND, inputs: [{ id: 'reduce', reduce: true }], options: stageOptions, concurrency: 1 };
}

/** The tasks of each way of asking, the reduce prompt (asked for, or added to a group that did not fit one prompt), and the bytes a token measured on the way. */
async function makeInputs(
  request: LlmJobRequest,
  resolved: ResolvedModel,
  options: LlmJobOptions,
  context: LlmPlanContext,
  notes: string[],
): Promise<{ inputs: LlmTaskInput[]; reducePrompt: string | undefined; ratio?: Measured | undefined }> {
  const served: ServedModel = { contextLength: resolved.contextLength, endpoints: resolved.endpoints };
  const template = request.template ?? '';
  const reducePrompt = request.reduce?.prompt;
  if (request.prompts !== undefined)
    return { inputs: promptInputs(request.prompts, request.system !== undefined), reducePrompt };
  if (request.upstream !== undefined)
    return { inputs: upstreamInputs(template, request.upstream.labels), reducePrompt };
  if (request.group === undefined)
    return { inputs: await templateInputs(request, template, served, options, context, notes), reducePrompt };
  const { inputs, ratio } = await groupInputs(request, template, request.group, served, options, context, notes);
  if (inputs.length > 1 && request.group === 'all' && reducePrompt === undefined) {
    notes.push(
      `They do not fit one prompt, so their ${inputs.length} answers are merged on the model by a reduce stage (map → reduce), added for you; pass reduce to word the merge yourself.`,
    );
    return { inputs, reducePrompt: defaultReducePrompt(template), ratio };
  }
  return { inputs, reducePrompt, ratio };
}

/** The job's options as stored with it: the resolved model, and what the request set. */
function jobOptionsOf(request: LlmJobRequest, model: string, settings: LlmSettings): LlmJobOptions {
  const options: LlmJobOptions = {
    model,
    timeout_seconds: request.timeoutSeconds ?? settings.requestTimeoutSeconds,
  };
  if (request.system !== undefined) options.system = request.system;
  if (request.template !== undefined) options.template = request.template;
  if (request.temperature !== undefined) options.temperature = request.temperature;
  if (request.maxTokens !== undefined) options.max_tokens = request.maxTokens;
  if (request.stop !== undefined) options.stop = request.stop;
  if (request.seed !== undefined) options.seed = request.seed;
  if (request.jsonSchema !== undefined) options.json_schema = request.jsonSchema;
  if (request.includeReasoning) options.include_reasoning = true;
  return options;
}

/** The request's parts go together: prompts or a template, what fills the template, group, reduce, from_job. */
function checkRequest(request: LlmJobRequest): void {
  if ((request.prompts === undefined) === (request.template === undefined)) {
    throw new MonitorError(
      'INVALID_INPUT',
      request.prompts
        ? 'Give either prompts or template, not both.'
        : 'Nothing to send: give prompts, or a template with items and/or files.',
      {
        hint: 'prompts: [{"prompt": "…"}], or template: "… {{content}} …" with files: ["src/**/*.ts"].',
      },
    );
  }
  if (
    request.upstream !== undefined &&
    (request.items !== undefined || request.files !== undefined || request.template === undefined)
  ) {
    throw new MonitorError(
      'INVALID_INPUT',
      'from_job fills a template from each result of that job: give template, and no items, files or prompts.',
      {
        hint: 'e.g. template: "Explain the risks in this dependency report:\\n{{output}}"; {{output}} is the whole output, {{id}} what the task worked on, and a JSON output\'s top-level fields fill {{field}}.',
      },
    );
  }
  if (
    request.prompts === undefined &&
    request.items === undefined &&
    request.files === undefined &&
    request.upstream === undefined
  ) {
    throw new MonitorError('INVALID_INPUT', 'A template needs items and/or files to fill it.', {
      hint: 'Add files: ["path/or/**/*.glob"] or items: [{"name": "value"}].',
    });
  }
  checkGroupAndReduce(request);
  if (request.prompts !== undefined && (request.items !== undefined || request.files !== undefined)) {
    throw new MonitorError('INVALID_INPUT', 'items and files go with a template, not with prompts.', {
      hint: 'Use template with {{placeholders}} instead of prompts.',
    });
  }
}

function checkGroupAndReduce(request: LlmJobRequest): void {
  if (
    request.group !== undefined &&
    (request.files === undefined ||
      request.items !== undefined ||
      request.chunk !== undefined ||
      request.chunkTokens !== undefined)
  ) {
    throw new MonitorError(
      'INVALID_INPUT',
      'group packs `files` into prompts and splits what does not fit by itself: it goes with files only, without items, chunk or chunk_tokens.',
      {
        hint: 'e.g. template: "Review the architecture of this module:\\n{{content}}", files: ["src/auth/**"], group: "all".',
      },
    );
  }
  if (request.reduce !== undefined && request.reduce.prompt.trim() === '') {
    throw new MonitorError('INVALID_INPUT', 'reduce needs a prompt: what to make of all the answers together.', {
      hint: 'e.g. reduce: "Combine these per-file findings into one architecture review."',
    });
  }
}
