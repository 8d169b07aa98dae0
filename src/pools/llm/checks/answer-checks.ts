import type { TaskResult } from '../../../engine/types.js';
import { errorText, isMonitorError } from '../../../errors.js';
import type { PathRules } from '../../../paths.js';
import type { LentServices } from '../../kind.js';
import { type Citation, citationsFromText, parseCitations, verifyCitations } from '../agent/citations.js';
import { AgentScope } from '../agent/scope.js';
import type { SchemaValidator } from '../schema.js';
import { CHECK_SCRIPT_TIMEOUT_SECONDS, type CheckOutcome, type ChecksOptions } from './types.js';

/** What checking an answer needs besides the answer: the schema checker, the folders citations may name, the lent checker scripts. */
export interface AnswerCheckDeps {
  schemas: SchemaValidator;
  allowedRoots: readonly string[];
  pathRules?: PathRules | undefined;
  lent: LentServices;
}

/** An answer as the checks see it: its whole text, its JSON when it is JSON, and the result it came in. */
export interface Answer {
  text: string;
  json?: unknown;
  result: TaskResult;
}

/** Citations named in a reason; the rest are counted. */
const SHOWN_FAILURES = 5;
/** How deep a JSON answer is searched for `citations` arrays. */
const CITATIONS_DEPTH = 16;

/** The checks other than agreement, in a fixed order, each with its verdict. */
export async function checkAnswer(
  answer: Answer,
  checks: ChecksOptions,
  jsonSchema: Record<string, unknown> | undefined,
  deps: AnswerCheckDeps,
  signal: AbortSignal,
): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  if (checks.schema === true && jsonSchema !== undefined) outcomes.push(schemaCheck(answer, jsonSchema, deps));
  if (checks.citations === true) outcomes.push(await citationsCheck(answer, deps, signal));
  if (checks.script !== undefined) outcomes.push(await scriptCheck(answer, checks.script, deps, signal));
  return outcomes;
}

function schemaCheck(answer: Answer, schema: Record<string, unknown>, deps: AnswerCheckDeps): CheckOutcome {
  const checked = deps.schemas.check(schema, answer.json !== undefined ? JSON.stringify(answer.json) : answer.text);
  return checked.ok ? { name: 'schema', ok: true } : { name: 'schema', ok: false, reason: checked.error };
}

/**
 * Every citation verified against the files: an investigation's own (checked when it finished), a
 * JSON answer's `citations` arrays, or a text answer's `path:line` mentions. Citing nothing fails.
 */
async function citationsCheck(answer: Answer, deps: AnswerCheckDeps, signal: AbortSignal): Promise<CheckOutcome> {
  const tally =
    agentTally(answer.result.value ?? {}) ??
    tallyOf(
      await verifyCitations(
        citationsOf(answer),
        new AgentScope({ allowedRoots: deps.allowedRoots, pathRules: deps.pathRules }),
        signal,
      ),
    );
  if (tally.total === 0)
    return {
      name: 'citations',
      ok: false,
      reason:
        'the answer cites nothing: back each claim with the lines it rests on, as path:line or path:start-end (in JSON: citations: [{path, start_line, end_line, quote}])',
    };
  if (tally.failed === 0) return { name: 'citations', ok: true };
  const named = tally.named
    .slice(0, SHOWN_FAILURES)
    .map((c) => `${c.path}:${c.start_line}${c.end_line !== c.start_line ? `-${c.end_line}` : ''} (${c.reason})`);
  const more = tally.failed > named.length ? ` and ${tally.failed - named.length} more` : '';
  return {
    name: 'citations',
    ok: false,
    reason: `${tally.failed} of ${tally.total} citation(s) do not hold: ${named.join('; ')}${more}`,
  };
}

type Checked = Citation & { verified: boolean; reason: string };

/** Citations counted, and those that failed named (as many as are known). */
interface Tally {
  total: number;
  failed: number;
  named: Checked[];
}

function tallyOf(checked: readonly Checked[]): Tally {
  const named = checked.filter((c) => !c.verified);
  return { total: checked.length, failed: named.length, named };
}

/** An investigation's citations, checked when it finished: `citations_verified` "k/n" and the ones its result shows. */
function agentTally(value: Record<string, unknown>): Tally | undefined {
  const counts = typeof value.citations_verified === 'string' ? /^(\d+)\/(\d+)$/.exec(value.citations_verified) : null;
  if (counts === null) return undefined;
  const shown = Array.isArray(value.citations) ? (value.citations as unknown[]) : [];
  const named = shown.flatMap((c): Checked[] => {
    const r = (c ?? {}) as Record<string, unknown>;
    if (r.verified !== false || typeof r.path !== 'string' || typeof r.start_line !== 'number') return [];
    const end = typeof r.end_line === 'number' ? r.end_line : r.start_line;
    const reason = typeof r.reason === 'string' ? r.reason : 'not verified';
    return [{ path: r.path, start_line: r.start_line, end_line: end, verified: false, reason }];
  });
  const total = Number(counts[2]);
  return { total, failed: total - Number(counts[1]), named };
}

/** A JSON answer's `citations` arrays, anywhere in it; else the `path:line` mentions of its text. */
function citationsOf(answer: Answer): Citation[] {
  if (answer.json === undefined) return citationsFromText(answer.text);
  const found: unknown[] = [];
  const visit = (node: unknown, depth: number): void => {
    if (depth > CITATIONS_DEPTH || node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const item of node) visit(item, depth + 1);
      return;
    }
    for (const [key, child] of Object.entries(node as Record<string, unknown>)) {
      if (key === 'citations' && Array.isArray(child)) found.push(...(child as unknown[]));
      else visit(child, depth + 1);
    }
  };
  visit(answer.json, 0);
  return parseCitations(found);
}

/** The checker script on the answer; a crash, a timeout or an unknown worker is a rejection with its reason, never the task's failure. */
async function scriptCheck(
  answer: Answer,
  script: NonNullable<ChecksOptions['script']>,
  deps: AnswerCheckDeps,
  signal: AbortSignal,
): Promise<CheckOutcome> {
  const run = deps.lent.checkAnswer?.bind(deps.lent);
  if (run === undefined)
    return { name: 'script', ok: false, reason: 'checker scripts are not available (the script kind is not loaded)' };
  try {
    const reply = await run(
      {
        worker: script.worker,
        ...(script.args ? { args: script.args } : {}),
        answer: answer.json !== undefined ? { text: answer.text, json: answer.json } : { text: answer.text },
        timeoutMs: (script.timeout_seconds ?? CHECK_SCRIPT_TIMEOUT_SECONDS) * 1000,
      },
      signal,
    );
    if (reply.accepted) return { name: 'script', ok: true };
    return { name: 'script', ok: false, reason: `${script.worker}: ${reply.reason ?? `exit ${reply.exitCode}`}` };
  } catch (error) {
    if (signal.aborted || (isMonitorError(error) && error.code === 'CANCELLED')) throw error;
    return { name: 'script', ok: false, reason: `${script.worker} could not run: ${errorText(error)}` };
  }
}
