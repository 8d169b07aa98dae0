import type { TaskResult } from '../../../engine/types.js';
import { wholeOutput } from '../../../store/result.js';
import { sumUsage } from '../usage.js';
import { agreement } from './agree.js';
import { type Answer, type AnswerCheckDeps, checkAnswer } from './answer-checks.js';
import { AGREE_TEMPERATURE, type CheckOutcome, type ChecksOptions } from './types.js';

/** One way of asking for the answer: which model, the files' names, and for a re-ask what was wrong. */
export interface Ask {
  model: string;
  /** Names the attempt's output files: the task's own stem first, `.r` a re-ask, `.e` an escalation, `.s2`… a sample. */
  stem: string;
  /** A re-ask: the earlier answer, and a message saying what failed and asking again. */
  feedback?: { answer: string; message: string };
  /** An agreement sample: sampled apart from the others. */
  sampling?: { temperature: number; seed?: number };
}

/** Asks once as `ask` says (a prompt, an investigation, a reduce) and gives its result. */
export type Asker = (ask: Ask) => Promise<TaskResult>;

export interface VerifyPlan {
  checks: ChecksOptions;
  model: string;
  stem: string;
  jsonSchema?: Record<string, unknown> | undefined;
  temperature?: number | undefined;
  seed?: number | undefined;
  /** An answer read back from a file is read up to this many bytes. */
  maxBytes: number;
  signal: AbortSignal;
}

/** What one attempt came to: the answer it settled on (undefined: it failed outright) and the checks' verdicts on it. */
interface Attempt {
  result: TaskResult;
  answer: Answer | undefined;
  outcomes: CheckOutcome[];
  asks: number;
}

type Stage = 'first' | 'reask' | 'escalate';

/**
 * Asks, checks, and spends the local hardware on what fails: an answer that fails a check is asked
 * again once with the reasons appended, then (when the job names one) the same prompt goes to the
 * escalation model; what still fails is kept as succeeded with `verified: false` and every failed
 * check's reason, never passed off as verified. An attempt that fails outright (no answer at all)
 * ends a first attempt as the task's failure; a later one leaves the earlier answer standing.
 */
export async function verifyAnswer(asker: Asker, plan: VerifyPlan, deps: AnswerCheckDeps): Promise<TaskResult> {
  // Every answer asked for, kept or not: what the task spent is all of theirs.
  const asked: TaskResult[] = [];
  const ask: Asker = async (request) => {
    const result = await asker(request);
    asked.push(result);
    return result;
  };
  const spent: Record<Stage, number> = { first: 0, reask: 0, escalate: 0 };
  const first = await attempt(ask, plan, deps, { model: plan.model, stem: plan.stem });
  spent.first = first.asks;
  if (first.answer === undefined) return withAllSpent(first.result, asked);
  let settled = first;
  let attempts = 1;
  let fixedBy: Stage | undefined;
  const errors: string[] = [];
  const noteFailure = (stage: string, failed: Attempt): void => {
    if (failed.answer === undefined)
      errors.push(`${stage}: ${failed.result.error?.code ?? 'ERROR'} ${failed.result.error?.message ?? ''}`.trim());
  };
  if (!passed(settled)) {
    const again = await attempt(ask, plan, deps, {
      model: plan.model,
      stem: `${plan.stem}.r`,
      feedback: { answer: settled.answer?.text ?? '', message: reaskMessage(settled.outcomes, plan) },
    });
    spent.reask = again.asks;
    attempts++;
    noteFailure('re-ask', again);
    if (again.answer !== undefined) settled = again;
    if (passed(again)) fixedBy = 'reask';
  }
  const escalateTo = plan.checks.escalate_model;
  if (fixedBy === undefined && !passed(settled) && escalateTo !== undefined) {
    const bigger = await attempt(ask, plan, deps, { model: escalateTo, stem: `${plan.stem}.e` });
    spent.escalate = bigger.asks;
    attempts++;
    noteFailure(`escalation to ${escalateTo}`, bigger);
    if (bigger.answer !== undefined) settled = bigger;
    if (passed(bigger)) fixedBy = 'escalate';
  }
  const result = verdict(settled, attempts, fixedBy, spent, plan);
  // What the first answer got wrong stays visible when a later one was kept: how far the model can be trusted.
  if (settled !== first && result.value) result.value.first_failure = failedReasons(first.outcomes);
  if (errors.length > 0 && result.value) result.value.attempt_errors = errors;
  return withAllSpent(result, asked);
}

/** A result whose tokens and requests are those of every answer asked for (one answer's are its own already). */
function withAllSpent(result: TaskResult, asked: readonly TaskResult[]): TaskResult {
  if (asked.length <= 1) return result;
  return { ...result, value: { ...(result.value ?? {}), ...sumUsage(asked.map((r) => r.value)) } };
}

function passed(attempt: Attempt): boolean {
  return attempt.answer !== undefined && attempt.outcomes.every((o) => o.ok);
}

/** One attempt: one answer, or `agree` samples and the answer most give; then the other checks on it. */
async function attempt(ask: Asker, plan: VerifyPlan, deps: AnswerCheckDeps, base: Ask): Promise<Attempt> {
  const k = plan.checks.agree ?? 1;
  if (k <= 1) {
    const result = await ask(base);
    const answer = answered(result) ? await answerOf(result, plan.maxBytes) : undefined;
    const outcomes = answer ? await checkAnswer(answer, plan.checks, plan.jsonSchema, deps, plan.signal) : [];
    return { result, answer, outcomes, asks: 1 };
  }
  const temperature = plan.temperature !== undefined && plan.temperature > 0 ? plan.temperature : AGREE_TEMPERATURE;
  const samples = await Promise.all(
    Array.from({ length: k }, (_, i) => {
      const sampling = plan.seed === undefined ? { temperature } : { temperature, seed: plan.seed + i };
      return ask({ ...base, stem: i === 0 ? base.stem : `${base.stem}.s${i + 1}`, sampling });
    }),
  );
  const answers = await Promise.all(samples.map((s) => (answered(s) ? answerOf(s, plan.maxBytes) : undefined)));
  const agreed = agreement(
    samples,
    answers.map((a) => (a === undefined ? undefined : a.json !== undefined ? JSON.stringify(a.json) : a.text)),
  );
  const chosen = agreed.chosen === undefined ? undefined : answers[agreed.chosen];
  const result = (agreed.chosen === undefined ? samples[0] : samples[agreed.chosen]) ?? samples[0];
  if (chosen === undefined || result === undefined)
    return { result: result ?? samples[0] ?? failedAll(), answer: undefined, outcomes: [], asks: k };
  const agree: CheckOutcome = agreed.majority
    ? { name: 'agree', ok: true, reason: `${agreed.votes} of ${agreed.asked} samples agree` }
    : { name: 'agree', ok: false, reason: agreed.reason ?? 'no majority' };
  const outcomes = [agree, ...(await checkAnswer(chosen, plan.checks, plan.jsonSchema, deps, plan.signal))];
  return { result, answer: chosen, outcomes, asks: k };
}

/** An answer came back: a success, or one off its schema (an investigation fails those itself; here the schema check says so). */
function answered(result: TaskResult): boolean {
  return result.ok || result.error?.code === 'SCHEMA_INVALID';
}

function failedAll(): TaskResult {
  return { ok: false, error: { code: 'INTERNAL', message: 'No sample was asked.' } };
}

async function answerOf(result: TaskResult, maxBytes: number): Promise<Answer> {
  const whole = await wholeOutput(result, maxBytes);
  return whole.json !== undefined ? { text: whole.text, json: whole.json, result } : { text: whole.text, result };
}

/** Reasons of the checks that failed, in one bounded line. */
function failedReasons(outcomes: readonly CheckOutcome[]): string {
  const text = outcomes
    .filter((o) => !o.ok)
    .map((o) => `${o.name}: ${o.reason ?? 'failed'}`)
    .join('; ');
  return text.length > FIRST_FAILURE_CHARS ? `${text.slice(0, FIRST_FAILURE_CHARS - 1)}…` : text;
}

const FIRST_FAILURE_CHARS = 300;

/** The re-ask: what failed, in the checks' own words, and what to do about it. */
function reaskMessage(outcomes: readonly CheckOutcome[], plan: VerifyPlan): string {
  const failed = outcomes.filter((o) => !o.ok).map((o) => `- ${o.name}: ${o.reason ?? 'failed'}`);
  const lines = ['Your answer was checked and it failed:', ...failed, 'Answer the same request again, fixing this.'];
  if (outcomes.some((o) => !o.ok && o.name === 'citations'))
    lines.push('Cite only lines that exist, as path:line or path:start-end, quoting them exactly.');
  if (plan.jsonSchema !== undefined) lines.push('Reply with only the JSON value, matching the schema.');
  return lines.join('\n');
}

/** The settled answer's result with its verdict: verified or not and why, attempts, and what the checks spent. */
function verdict(
  settled: Attempt,
  attempts: number,
  fixedBy: Stage | undefined,
  spent: Record<Stage, number>,
  plan: VerifyPlan,
): TaskResult {
  const verified = passed(settled);
  const value: Record<string, unknown> = {
    ...(settled.result.value ?? {}),
    verified,
    checks: settled.outcomes,
    attempts,
  };
  if (fixedBy !== undefined) value.fixed_by = fixedBy === 'reask' ? 're-ask' : 'escalation';
  const extra: Record<string, number> = {};
  const k = plan.checks.agree ?? 1;
  if (k > 1) extra.agree = spent.first - 1;
  if (spent.reask > 0) extra.reask = spent.reask;
  if (spent.escalate > 0) extra.escalate = spent.escalate;
  if (Object.keys(extra).length > 0) value.extra_requests = extra;
  const result: TaskResult = { ok: true, value };
  if (settled.result.files) result.files = settled.result.files;
  return result;
}
