import path from 'node:path';
import type { Pool, ResultValue, TaskContext, TaskResult } from '../../engine/types.js';
import { toTaskError } from '../../errors.js';
import type { PathRules } from '../../paths.js';
import type { LentServices } from '../kind.js';
import { Investigation } from './agent/loop.js';
import { wholeOutput } from '../../store/result.js';
import { shortLabel } from '../kind.js';
import { keepText } from './answer-files.js';
import { Completer } from './completion.js';
import { askInParts, type SplitOutcome, splitFailure, splitForContext } from './context-split.js';
import type { Endpoints } from './endpoints.js';
import {
  buildMessages,
  describeInput,
  overflowHint,
  prefixKeyOf,
  type PromptInput,
  type PromptSources,
} from './prompt.js';
import { type Ask as ReduceAsk, piecesOf, treeReduce } from './reduce.js';
import type { SchemaValidator } from './schema.js';
import type { StallBoard } from './stall.js';
import { jobOptions, taskInput } from './stored.js';
import type { ChatMessage, LlmJobOptions, LlmTaskInput, ReduceTaskInput } from './types.js';
import { sumUsage } from './usage.js';
import { type Ask, type Asker, verifyAnswer } from './checks/verify.js';
import { LLM_KIND } from './facts.js';

export interface LlmPoolOptions {
  endpoints: Endpoints;
  schemas: SchemaValidator;
  allowedRoots: readonly string[];
  /** How this system compares paths (Linux's when not given). */
  pathRules?: PathRules;
  maxRetries: number;
  maxFileBytes: number;
  maxInlineChars: number;
  /** What other kinds lend (the warm outline worker for the agents), filled by the wiring. */
  lent?: LentServices;
  /** Longest silence of a streamed answer (0 = none) and where the endpoint cards read silences (stall.ts). */
  stallMs?: number;
  stallBoard?: StallBoard;
}

/**
 * Agents hold a slot only while their request runs, not while their tools do: a job of them may
 * run this many times the slots' agents at once, so a slot freed by one agent's tool call serves another.
 */
export const AGENTS_PER_SLOT = 2;

/**
 * The `llm` worker kind's pool. One task = one prompt (a file chunk filled into the template, or
 * ready messages), or a reduce over a whole job's answers. The request path (routing, failover,
 * retries) is completion.ts's, the answer's judging (schema, reasoning, files) judge.ts's; here a
 * task becomes its prompts: split in two when its files overflow the context, merged by a reduce.
 */
export class LlmPool implements Pool {
  readonly kind = LLM_KIND;
  private readonly endpoints: Endpoints;
  private readonly options: LlmPoolOptions;
  private readonly completer: Completer;
  private readonly sources: PromptSources;

  constructor(options: LlmPoolOptions) {
    this.options = options;
    this.endpoints = options.endpoints;
    this.completer = new Completer(options);
    this.sources = {
      allowedRoots: options.allowedRoots,
      pathRules: options.pathRules,
      maxFileBytes: options.maxFileBytes,
      contextLength: (model) => this.endpoints.contextLength(model),
      prefixFirst: this.endpoints.settings.prefixReuse,
    };
  }

  /** All endpoint limits together: the router holds each endpoint to its own. */
  get concurrency(): number {
    return this.endpoints.router.capacity;
  }

  /** Investigations may be more than the slots (see AGENTS_PER_SLOT); prompts are as many as the slots. */
  concurrencyFor(options: unknown): number {
    return jobOptions(options).agent ? this.concurrency * AGENTS_PER_SLOT : this.concurrency;
  }

  /** A task by its id: the prompt's id, the file (and chunk) or the item it was made from. */
  label(input: unknown): string | undefined {
    const id = (input as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? shortLabel(id) : undefined;
  }

  async prepareJob(job: { jobId: string; options: unknown; signal: AbortSignal }): Promise<void> {
    await this.endpoints.ensureLoaded(jobOptions(job.options).model, job.signal);
  }

  async run(task: TaskContext): Promise<TaskResult> {
    const options = jobOptions(task.options);
    const input = taskInput(task.input);
    if ('task' in input && options.agent === undefined)
      return {
        ok: false,
        error: { code: 'INTERNAL', message: 'An investigation ran in a job without agent options.' },
      };
    const ask: Asker =
      'reduce' in input
        ? (a) => this.reduce(task, asked(options, a), a.stem, a.feedback?.message)
        : options.agent !== undefined
          ? (a) => this.investigate(task, asked(options, a), input, a)
          : (a) => this.prompt(task, asked(options, a), input, a.stem, followUp(a));
    const stem = String(task.index);
    if (options.checks === undefined) return ask({ model: options.model, stem });
    // A reduce's answer has no schema of its own and is one merge: its checks are the files' and the script's.
    const checks =
      'reduce' in input ? { ...options.checks, schema: undefined, agree: undefined } : { ...options.checks };
    // Nothing left to check (a reduce of a job that only asked for schema or agreement): no verdict, not a vacuous "verified".
    if (
      checks.citations !== true &&
      checks.script === undefined &&
      checks.schema !== true &&
      checks.agree === undefined
    )
      return ask({ model: options.model, stem });
    return verifyAnswer(
      ask,
      {
        checks,
        model: options.model,
        stem,
        jsonSchema: 'reduce' in input ? undefined : options.json_schema,
        temperature: options.temperature,
        seed: options.seed,
        maxBytes: this.options.maxFileBytes,
        signal: task.signal,
      },
      {
        schemas: this.options.schemas,
        allowedRoots: this.options.allowedRoots,
        pathRules: this.options.pathRules,
        lent: this.options.lent ?? {},
      },
    );
  }

  /** One prompt; one whose files overflow the context is asked in parts (context-split.ts). */
  private async prompt(
    task: TaskContext,
    options: LlmJobOptions,
    input: PromptInput,
    stem: string,
    followUp: readonly ChatMessage[] = [],
  ): Promise<TaskResult> {
    const whole = await this.askOnce(task, options, input, stem, followUp);
    if (whole.ok || whole.error?.code !== 'CONTEXT_OVERFLOW' || !('file' in input || 'files' in input)) return whole;
    const split = await askInParts(
      input,
      stem,
      (part, partStem) => this.askOnce(task, options, part, partStem, followUp),
      (part) => {
        this.endpoints.log.debug(
          `task ${task.index} of ${task.jobId}: ${part.id} overflowed the context, splitting it in two`,
        );
        return splitForContext(part, this.options.allowedRoots, this.options.pathRules);
      },
    );
    const result = split ? await this.joinParts(task, options, input, stem, split) : whole;
    const hint = overflowHint(input, result.error?.hint);
    if (!result.ok && result.error?.code === 'CONTEXT_OVERFLOW' && hint !== undefined) result.error.hint = hint;
    return result;
  }

  /** One request of a prompt (or of a part of one); an error building or sending it is its result. */
  private async askOnce(
    task: TaskContext,
    options: LlmJobOptions,
    input: PromptInput,
    stem: string,
    followUp: readonly ChatMessage[],
  ): Promise<TaskResult> {
    try {
      const messages = [...(await buildMessages(options, input, task.upstream, this.sources)), ...followUp];
      const prefixKey = prefixKeyOf(options, input, this.sources.prefixFirst === true);
      return await this.completer.complete(task, options, messages, describeInput(input), stem, { prefixKey });
    } catch (error) {
      if (task.signal.aborted) throw error;
      return { ok: false, error: toTaskError(error), value: describeInput(input) };
    }
  }

  /** The parts of a prompt that overflowed: their answers joined, each labelled, or the failure of the part that failed. */
  private async joinParts(
    task: TaskContext,
    options: LlmJobOptions,
    input: PromptInput,
    stem: string,
    split: SplitOutcome,
  ): Promise<TaskResult> {
    const value: Record<string, unknown> = {
      ...describeInput(input),
      model: options.model,
      split_for_context: split.parts,
      ...sumUsage(split.asked.map((part) => part.result.value)),
    };
    if (split.asked.some((part) => !part.result.ok)) return { ok: false, value, error: splitFailure(split) };
    const texts = await Promise.all(split.asked.map((part) => wholeOutput(part.result, this.options.maxFileBytes)));
    const joined = texts
      .map((text, i) => `[part ${i + 1} of ${split.parts}: ${split.asked[i]?.input.id ?? ''}]\n${text.text}`)
      .join('\n\n');
    return this.answered(task, stem, joined, value);
  }

  /** An investigation: its task given, or filled from its upstream result (a later stage's), run as an agent loop. */
  private async investigate(
    task: TaskContext,
    options: LlmJobOptions,
    input: Exclude<LlmTaskInput, ReduceTaskInput>,
    ask: Ask,
  ): Promise<TaskResult> {
    const agent = options.agent ?? { max_steps: 1 };
    let spec: { task: string; paths?: readonly string[] | undefined };
    if ('task' in input) spec = { task: input.task, paths: input.paths };
    else if ('upstream' in input) {
      const messages = await buildMessages({ ...options, system: undefined }, input, task.upstream, this.sources);
      spec = { task: messages.at(-1)?.content ?? '', paths: agent.paths };
    } else
      return {
        ok: false,
        error: { code: 'INTERNAL', message: 'An investigation needs a task or an upstream result.' },
      };
    const investigation = new Investigation(
      {
        completer: this.completer,
        endpoints: this.endpoints,
        schemas: this.options.schemas,
        allowedRoots: this.options.allowedRoots,
        pathRules: this.options.pathRules,
        maxInlineChars: this.options.maxInlineChars,
        lent: this.options.lent ?? {},
      },
      task,
      options,
      {
        ...spec,
        task: withFeedback(spec.task, ask),
        maxSteps: agent.max_steps,
        stem: ask.stem,
        replayAnswered: options.checks !== undefined,
      },
    );
    return investigation.run();
  }

  /** A reduce stage's task: merges its upstream's answers on the model (see treeReduce). */
  private async reduce(
    task: TaskContext,
    options: LlmJobOptions,
    stem: string,
    feedback?: string,
  ): Promise<TaskResult> {
    const reduce = options.reduce && {
      ...options.reduce,
      prompt: feedback === undefined ? options.reduce.prompt : `${options.reduce.prompt}\n\n${feedback}`,
    };
    if (!reduce || !task.upstream)
      return {
        ok: false,
        error: { code: 'INTERNAL', message: 'A reduce task ran without its reduce options or its upstream results.' },
      };
    const pieces = await piecesOf(task.upstream.records, this.options.maxFileBytes);
    const step: LlmJobOptions = { ...options };
    delete step.json_schema;
    delete step.template;
    const answers: ResultValue[] = [];
    const ask: ReduceAsk = async (messages, stem, maxTokens) => {
      const result = await this.completer.complete(
        task,
        { ...step, max_tokens: maxTokens },
        options.system ? [{ role: 'system', content: options.system }, ...messages] : messages,
        {},
        stem,
      );
      const value = result.value ?? {};
      answers.push(value);
      if (!result.ok)
        return {
          ok: false,
          error: result.error ?? { code: 'INTERNAL', message: 'A reduce step failed without an error.' },
          value,
        };
      return { ok: true, text: (await wholeOutput(result, this.options.maxFileBytes)).text, value };
    };
    const outcome = await treeReduce(
      pieces,
      reduce,
      ask,
      path.join(task.outputDir, `${stem}.reduce`),
      task.upstream.jobId,
    );
    const summary: Record<string, unknown> = {
      inputs: outcome.inputs,
      failed_inputs: outcome.failedInputs.slice(0, 50),
      levels: outcome.levels,
      requests: outcome.requests,
      model: options.model,
      ...sumUsage(answers),
    };
    if (outcome.failedInputs.length > 50) summary.failed_inputs_more = outcome.failedInputs.length - 50;
    const unverified = pieces.filter((piece) => piece.unverified).map((piece) => piece.source);
    if (unverified.length > 0) summary.unverified_inputs = unverified.slice(0, 50);
    if (outcome.reused > 0) summary.reused_steps = outcome.reused;
    if (!outcome.result.ok) return { ok: false, error: outcome.result.error, value: summary };
    return this.answered(task, stem, outcome.result.text, summary);
  }

  /** A result made of several answers (split parts, a reduce): the joined text kept, then the figures. */
  private async answered(
    task: TaskContext,
    stem: string,
    text: string,
    figures: Record<string, unknown>,
  ): Promise<TaskResult> {
    const kept = await keepText(task.outputDir, stem, text, 'answer', this.options.maxInlineChars);
    const result: TaskResult = { ok: true, value: { ...kept.inline, ...figures } };
    if (kept.file !== undefined) result.files = { output: kept.file };
    return result;
  }
}

/** The job's options as one ask wants them: its model (an escalation's), and an agreement sample's sampling. */
function asked(options: LlmJobOptions, ask: Ask): LlmJobOptions {
  if (ask.model === options.model && ask.sampling === undefined) return options;
  const changed: LlmJobOptions = { ...options, model: ask.model };
  if (ask.sampling !== undefined) {
    changed.temperature = ask.sampling.temperature;
    if (ask.sampling.seed !== undefined) changed.seed = ask.sampling.seed;
  }
  return changed;
}

/** A re-ask of a prompt: the answer that failed, then what failed in it. */
function followUp(ask: Ask): ChatMessage[] {
  if (ask.feedback === undefined) return [];
  return [
    { role: 'assistant', content: ask.feedback.answer },
    { role: 'user', content: ask.feedback.message },
  ];
}

/** Most of an earlier answer an investigation's re-ask repeats to it. */
const FEEDBACK_ANSWER_CHARS = 4000;

/** A re-asked investigation's task: the task, the answer that failed (its start), and what failed in it. */
function withFeedback(task: string, ask: Ask): string {
  if (ask.feedback === undefined) return task;
  const answer = ask.feedback.answer.slice(0, FEEDBACK_ANSWER_CHARS);
  return `${task}\n\nAn earlier answer to this task:\n${answer}\n\n${ask.feedback.message}`;
}
