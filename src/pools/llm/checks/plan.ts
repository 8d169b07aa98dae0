import { MonitorError } from '../../../errors.js';
import type { LentServices } from '../../kind.js';
import type { Endpoints } from '../endpoints.js';
import { type ChecksOptions, MOST_AGREE } from './types.js';

/** The checks lmstudio_complete and lmstudio_investigate take, before they are checked. */
export interface ChecksRequest {
  schema?: boolean | undefined;
  citations?: boolean | undefined;
  script?: { worker: string; args?: readonly string[] | undefined; timeoutSeconds?: number | undefined } | undefined;
  agree?: number | undefined;
}

/** Longest run a checker script may be given. */
const MOST_SCRIPT_SECONDS = 3600;

export interface ChecksContext {
  endpoints: Endpoints;
  lent?: LentServices | undefined;
  signal: AbortSignal;
}

/**
 * The job's checks as stored: each one's parts checked now (a checker script that exists, an
 * escalation model some endpoint serves), the schema check implied by json_schema. Undefined when
 * nothing is checked; `notes` say what was implied.
 */
export async function planChecks(
  request: ChecksRequest | undefined,
  escalateModel: string | undefined,
  job: { model: string; jsonSchema: Record<string, unknown> | undefined },
  context: ChecksContext,
  notes: string[],
): Promise<ChecksOptions | undefined> {
  if (request === undefined) {
    if (escalateModel !== undefined)
      throw new MonitorError(
        'INVALID_INPUT',
        'escalate_model takes answers that fail their checks: no checks are given.',
        {
          hint: 'Add checks, e.g. checks: {"citations": true}, or leave escalate_model out.',
        },
      );
    return undefined;
  }
  const checks: ChecksOptions = {};
  if (request.schema === true && job.jsonSchema === undefined)
    throw new MonitorError('INVALID_INPUT', 'checks.schema checks answers against json_schema, and none is given.', {
      hint: 'Give json_schema too, or leave schema out of checks.',
    });
  if (job.jsonSchema !== undefined) {
    if (request.schema !== true) notes.push('With json_schema, checks include schema.');
    checks.schema = true;
  }
  if (request.citations === true) checks.citations = true;
  if (request.script !== undefined) checks.script = await scriptCheck(request.script, context);
  if (request.agree !== undefined && request.agree > 1) {
    if (!Number.isInteger(request.agree) || request.agree > MOST_AGREE)
      throw new MonitorError('INVALID_INPUT', `checks.agree is how many samples to compare: 2 to ${MOST_AGREE}.`, {
        hint: 'e.g. agree: 3 (the answer two of three samples give).',
      });
    checks.agree = request.agree;
  }
  if (Object.keys(checks).length === 0)
    throw new MonitorError('INVALID_INPUT', 'checks names no check.', {
      hint: 'Name at least one: {"schema": true} (with json_schema), {"citations": true}, {"script": {"worker": "…"}} or {"agree": 3}.',
    });
  if (escalateModel !== undefined) {
    const resolved = await context.endpoints.resolveModel(escalateModel, context.signal);
    if (resolved.model === job.model)
      throw new MonitorError('INVALID_INPUT', `escalate_model is the job's own model (${job.model}).`, {
        hint: 'Name a bigger model from lmstudio_models, on any endpoint.',
      });
    checks.escalate_model = resolved.model;
    notes.push(`Answers that fail their checks after one re-ask go to ${resolved.model}.`);
  }
  return checks;
}

async function scriptCheck(
  script: NonNullable<ChecksRequest['script']>,
  context: ChecksContext,
): Promise<NonNullable<ChecksOptions['script']>> {
  const exists = context.lent?.checkerExists?.bind(context.lent);
  if (exists === undefined)
    throw new MonitorError('INVALID_INPUT', 'checks.script needs the script kind, which is not loaded here.', {
      hint: 'Use the schema, citations or agree checks instead.',
    });
  if (script.timeoutSeconds !== undefined && script.timeoutSeconds > MOST_SCRIPT_SECONDS)
    throw new MonitorError(
      'INVALID_INPUT',
      `checks.script.timeout_seconds is at most ${MOST_SCRIPT_SECONDS}; got ${script.timeoutSeconds}.`,
      { hint: 'A checker should take seconds; leave timeout_seconds out for 60.' },
    );
  await exists(script.worker);
  const stored: NonNullable<ChecksOptions['script']> = { worker: script.worker };
  if (script.args !== undefined) stored.args = [...script.args];
  if (script.timeoutSeconds !== undefined) stored.timeout_seconds = script.timeoutSeconds;
  return stored;
}
