import * as z from 'zod';
import type { LlmErrorCode } from './errors.js';
import { BusyError, redactSecret, UpstreamAnswerError, type UpstreamContext } from './upstream.js';

/**
 * Error answers: the error found in a body (every server spells it its own way) and mapped to a
 * MonitorError with the next step to take.
 */

/** The parts of an error body worth keeping: every server spells it differently. */
export interface UpstreamErrorBody {
  message: string;
  type?: string;
  code?: string;
  param?: string;
  /** The context the request overflowed, where the server says (llama-server's `n_ctx`: the slot's). */
  contextTokens?: number;
}

// Loose on purpose: a field of an unexpected type is dropped, never fatal.
const optionalText = z.string().optional().catch(undefined);
const optionalCode = z.union([z.string(), z.number()]).transform(String).optional().catch(undefined);
const errorFieldsSchema = z.looseObject({
  message: optionalText,
  type: optionalText,
  code: optionalCode,
  param: optionalText,
  n_ctx: z.number().int().positive().optional().catch(undefined),
});
const fastApiIssueSchema = z.looseObject({ msg: z.string() });
const errorEnvelopeSchema = z.looseObject({
  error: z.unknown().optional(),
  object: z.unknown().optional(),
  detail: z.unknown().optional(),
});

function fields(source: z.infer<typeof errorFieldsSchema>, message: string): UpstreamErrorBody {
  const out: UpstreamErrorBody = { message };
  if (source.type !== undefined) out.type = source.type;
  if (source.code !== undefined) out.code = source.code;
  if (source.param !== undefined) out.param = source.param;
  if (source.n_ctx !== undefined) out.contextTokens = source.n_ctx;
  return out;
}

/**
 * Finds the error in a response body, if there is one: `{"error":"…"}`, `{"error":{message,type,code}}`,
 * vLLM's older `{"object":"error","message":…}`, or FastAPI's `{"detail":…}` (a string, or a list of
 * validation issues). LM Studio sends some of these with status 200, so callers check every body.
 */
export function extractUpstreamError(body: unknown): UpstreamErrorBody | undefined {
  const envelope = errorEnvelopeSchema.safeParse(body);
  if (!envelope.success) return undefined;
  const { error, object, detail } = envelope.data;
  if (typeof error === 'string') return { message: error };
  if (typeof error === 'object' && error !== null) {
    const parsed = errorFieldsSchema.safeParse(error);
    if (parsed.success) return fields(parsed.data, parsed.data.message ?? JSON.stringify(error));
  }
  if (object === 'error') {
    const parsed = errorFieldsSchema.safeParse(body);
    if (parsed.success && parsed.data.message !== undefined) return fields(parsed.data, parsed.data.message);
  }
  if (typeof detail === 'string') return { message: detail };
  if (Array.isArray(detail)) {
    const issues = detail
      .map((item) => fastApiIssueSchema.safeParse(item))
      .flatMap((p) => (p.success ? [p.data.msg] : []));
    if (issues.length > 0) return { message: issues.join('; ') };
  }
  return undefined;
}

/** An error answer, read once for the rules below: its text (token scrubbed) and the fields servers set. */
interface ErrorAnswer {
  status: number;
  where: string;
  text: string;
  lower: string;
  type: string;
  code: string;
  param: string | undefined;
  contextTokens: number | undefined;
  statusText: string;
  ctx: UpstreamContext;
}

/** Maps an error answer (any status, including 200 carrying `error`) to a MonitorError with a next step. */
export function upstreamError(
  status: number,
  body: UpstreamErrorBody,
  ctx: UpstreamContext,
  retryAfterMs?: number,
): UpstreamAnswerError {
  const text = redactSecret(body.message.trim(), ctx.secret);
  const answer: ErrorAnswer = {
    status,
    where: `endpoint ${ctx.endpoint.name}`,
    text,
    lower: text.toLowerCase(),
    type: (body.type ?? '').toLowerCase(),
    code: (body.code ?? '').toLowerCase(),
    param: body.param,
    contextTokens: body.contextTokens,
    statusText: status === 200 ? 'status 200 carrying an error' : `HTTP ${status}`,
    ctx,
  };
  return authError(answer) ?? requestError(answer) ?? serverError(answer, retryAfterMs);
}

function answerError(
  answer: ErrorAnswer,
  errorCode: LlmErrorCode | 'INVALID_INPUT',
  message: string,
  hint: string,
): UpstreamAnswerError {
  return new UpstreamAnswerError(errorCode, message, answer.status, { hint });
}

/** A refused token, or none where one is needed: AUTH_REQUIRED with how to set it. */
function authError(answer: ErrorAnswer): UpstreamAnswerError | undefined {
  const { status, code, lower, ctx } = answer;
  if (!(status === 401 || status === 403 || code === 'invalid_api_key' || /api token|api key/.test(lower)))
    return undefined;
  const env = ctx.endpoint.apiKeyEnv;
  const hint = ctx.tokenSent
    ? `The token in ${env ?? 'the configured env var'} was refused: create a new one (LM Studio: Developer → Server Settings → Manage Tokens) and restart monitor-mcp with it.`
    : env
      ? `Set ${env} to the server's API token in monitor-mcp's environment (e.g. \`claude mcp add -e ${env}=… monitor-mcp -- …\`), or turn off "Require Authentication" in LM Studio's server settings.`
      : `Add "apiKeyEnv": "<ENV_VAR_NAME>" to this endpoint in the config file and set that variable to the token.`;
  return answerError(
    answer,
    'AUTH_REQUIRED',
    `${answer.where} refused the request (${answer.statusText}): ${answer.text}`,
    hint,
  );
}

/** What the request asked that this server cannot do: no model loaded, the schema, the model, the context, the path. */
function requestError(answer: ErrorAnswer): UpstreamAnswerError | undefined {
  const { where, text, lower, type, code, statusText, ctx } = answer;
  if (/no models? (are )?loaded/.test(lower)) {
    return answerError(
      answer,
      'MODEL_NOT_LOADED',
      `${where} has no model loaded: ${text}`,
      'Load a model (LM Studio: Developer tab → Select a model, or `lms load <model>`), or pass `model` with a downloaded model so LM Studio loads it just in time. lmstudio_models lists what is there.',
    );
  }
  if (answer.param === 'response_format' || /response_format|json_schema|invalid schema/.test(lower)) {
    return answerError(
      answer,
      'INVALID_INPUT',
      `${where} refused json_schema (${statusText}): ${text}`,
      'Make the schema acceptable to this server: for OpenAI\'s strict mode every object needs "additionalProperties": false and every property listed in "required"; or simplify it (no $ref, fewer keywords).',
    );
  }
  if (
    code === 'model_not_found' ||
    /invalid model identifier|model .*not found|model_not_found|does not exist|unknown model/.test(lower)
  ) {
    return answerError(
      answer,
      'MODEL_NOT_FOUND',
      `${where} does not serve model "${ctx.model ?? '?'}": ${text}`,
      "Pass one of the models there as `model` (lmstudio_models shows each endpoint's models), or download it first (`lms get <model>`, `ollama pull <model>`).",
    );
  }
  if (
    type.includes('exceed_context') ||
    /context (length|size|window)|n_keep|n_ctx|too many tokens|maximum context|context.*exceeded|prompt is too long|longer than the (model'?s )?context/.test(
      lower,
    )
  ) {
    // llama-server's own shape: its context is per slot and set when it starts, not per model load.
    const llama = type === 'exceed_context_size_error';
    return answerError(
      answer,
      'CONTEXT_OVERFLOW',
      `The prompt does not fit the model's context on ${where}: ${text}`,
      llama
        ? `Send less per prompt: for files pass chunk: true (or chunk_tokens) so each file is split into chunks, or shorten the template; or ${llamaLargerContext(answer.contextTokens)}.`
        : 'Send less per prompt: for files pass chunk: true (or chunk_tokens) so each file is split into chunks, shorten the template, lower max_tokens, or load the model with a larger context length.',
    );
  }
  if (/unexpected endpoint or method/.test(lower)) {
    return answerError(
      answer,
      'UPSTREAM_ERROR',
      `${where} does not know this path (${statusText}): ${text}`,
      `The endpoint URL should be the server's base address without /v1 (now ${ctx.endpoint.url}); fix it in the config file or --lmstudio-url/--endpoint.`,
    );
  }
  return undefined;
}

/** How to make llama-server's context larger: each slot holds `-c` / `--parallel` tokens, fixed at start. */
function llamaLargerContext(slotTokens: number | undefined): string {
  const holds = slotTokens === undefined ? '' : ` (this slot holds ${slotTokens} tokens)`;
  return `give each slot more context: llama-server splits its total context -c evenly across its --parallel slots${holds}, so restart it with a larger -c or a smaller --parallel`;
}

/**
 * The way to a larger context an overflow hint from here names, for a hint written over it (a chunk's,
 * a pack's): llama-server's own flags when the server was one, else loading the model larger.
 */
export function largerContextIn(hint: string | undefined): string {
  return (
    /give each slot more context: llama-server .*? a smaller --parallel/.exec(hint ?? '')?.[0] ??
    'load the model with a larger context length'
  );
}

/** The server's own trouble: busy (retried), a failed load, a crash, a bare 500 (retried once), or anything else. */
function serverError(answer: ErrorAnswer, retryAfterMs: number | undefined): UpstreamAnswerError {
  const { status, where, text, lower, type, statusText } = answer;
  // "Error loading model…" is a failed load, not a load in progress: retrying would only load again.
  if (
    status === 429 ||
    status === 502 ||
    status === 503 ||
    status === 504 ||
    type === 'unavailable_error' ||
    /^loading model/.test(lower)
  ) {
    return new BusyError(`${where} is busy or unavailable (${statusText}): ${text}`, status, retryAfterMs);
  }
  if (/(error|failed to|unable to) load(ing)? (the )?model/.test(lower)) {
    return answerError(
      answer,
      'UPSTREAM_ERROR',
      `${where} could not load the model: ${text}`,
      'The model does not fit or its runtime failed: load it by hand with a smaller context length (LM Studio: Developer tab, or `lms load <model> --context-length 8192`), free memory by unloading other models, or pick a smaller model.',
    );
  }
  if (/crash/.test(lower)) {
    return answerError(
      answer,
      'UPSTREAM_ERROR',
      `The model crashed on ${where}: ${text}`,
      'Reload the model (LM Studio: eject and load again, or `lms unload --all && lms load <model>`), maybe with a smaller context length, then resume_job with include_failed: true.',
    );
  }
  if (status === 500) {
    // LM Studio answers a bare 500 when overloaded; a real bug would fail again, so once only (see retriedOnlyOnce).
    return new UpstreamAnswerError(
      'UPSTREAM_ERROR',
      `${where} answered with an error (${statusText}): ${text}`,
      status,
      {
        hint: "LM Studio answers 500 when it is overloaded; it was retried once. Lower `concurrency` (or the endpoint's), check the server log, then run the failed prompts again with resume_job (include_failed: true).",
        retryable: true,
      },
    );
  }
  return answerError(
    answer,
    'UPSTREAM_ERROR',
    `${where} answered with an error (${statusText}): ${text}`,
    'Check the request options (json_schema, stop, max_tokens) and the server log.',
  );
}
