import * as z from 'zod';
import { MonitorError } from '../../errors.js';
import { LlmError, type LlmErrorCode } from './errors.js';
import type { EndpointConfig } from './settings.js';

/** What the error mapping needs to know about the endpoint and the request. */
export interface UpstreamContext {
  endpoint: Pick<EndpointConfig, 'name' | 'url' | 'flavor' | 'apiKeyEnv'>;
  model?: string;
  /** True when a bearer token was sent (a 401 then means the token is wrong, not missing). */
  tokenSent: boolean;
  /** The token itself, only to scrub it from server messages (LM Studio echoes part of a malformed one). */
  secret?: string;
}

/** An error the server sent as an HTTP answer: proof that the endpoint is there and answering. */
export class UpstreamAnswerError extends LlmError {
  readonly status: number;

  constructor(
    code: LlmErrorCode | 'INVALID_INPUT',
    message: string,
    status: number,
    options: { hint?: string | undefined; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, options);
    this.status = status;
  }
}

/** 429/502/503/504 and "Loading model": transient, retried after the server's Retry-After when it sent one. */
export class BusyError extends UpstreamAnswerError {
  readonly retryAfterMs: number | undefined;

  constructor(message: string, status: number, retryAfterMs?: number) {
    super('UPSTREAM_ERROR', message, status, {
      hint: "The server is busy, overloaded or still loading the model; it was retried with backoff. Lower `concurrency` or the endpoint's concurrency if this persists.",
      retryable: true,
    });
    this.retryAfterMs = retryAfterMs;
  }
}

/** The HTTP status when the error came from an answer (the endpoint is reachable), else undefined. */
export function answeredStatus(error: unknown): number | undefined {
  return error instanceof UpstreamAnswerError ? error.status : undefined;
}

/** The parts of an error body worth keeping: every server spells it differently. */
export interface UpstreamErrorBody {
  message: string;
  type?: string;
  code?: string;
  param?: string;
}

// Loose on purpose: a field of an unexpected type is dropped, never fatal.
const optionalText = z.string().optional().catch(undefined);
const optionalCode = z.union([z.string(), z.number()]).transform(String).optional().catch(undefined);
const errorFieldsSchema = z.looseObject({
  message: optionalText,
  type: optionalText,
  code: optionalCode,
  param: optionalText,
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

const REDACTED = '[redacted]';

/**
 * Removes the token from text that came from the server: the whole token, any run of 6 or more of
 * its first characters (LM Studio's "Malformed token" error quotes the first 10), and anything that
 * looks like an LM Studio token (`sk-lm-…`).
 */
export function redactSecret(text: string, secret?: string): string {
  let out = text;
  if (secret !== undefined && secret.length >= 4) {
    out = out.split(secret).join(REDACTED);
    if (secret.length > 6) {
      const head = secret.slice(0, 6);
      for (let at = out.indexOf(head); at !== -1; at = out.indexOf(head, at + REDACTED.length)) {
        let end = at + head.length;
        while (end < out.length && end - at < secret.length && out[end] === secret[end - at]) end++;
        out = out.slice(0, at) + REDACTED + out.slice(end);
      }
    }
  }
  return out.replace(/sk-lm-\S+/g, `sk-lm-${REDACTED}`);
}

/** How to get the server running, for "cannot reach" errors. */
function startHint(endpoint: UpstreamContext['endpoint']): string {
  return endpoint.flavor === 'lmstudio'
    ? `Start LM Studio's server: in LM Studio's Developer tab switch the server's Status to Running, or run \`lms server start\` (headless: \`lms daemon up\` first). If it runs elsewhere, point monitor-mcp at it with --lmstudio-url or "llm.endpoints" in the config file (now ${endpoint.url}).`
    : `Start the server at ${endpoint.url} (llama-server, \`ollama serve\`, vLLM, …) or fix the endpoint URL in the config file ("llm.endpoints") or --endpoint.`;
}

/** The request never reached the server: another endpoint can take it at once. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/** The connection closed after it was made: the request may have been written and even run. */
export const CLOSED_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

export function errorCodeOf(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return e.code;
    e = typeof e === 'object' && e !== null && 'cause' in e ? e.cause : undefined;
  }
  return undefined;
}

/** True for failures where the request never reached the server: another endpoint can take it. */
export function isConnectionFailure(error: unknown): boolean {
  return error instanceof MonitorError && error.code === 'ENDPOINT_UNREACHABLE';
}

/**
 * A connection failure worth waiting out: nothing answers there now (not running, restarting,
 * unreachable for a moment). A name that does not resolve is a wrong URL, not an outage.
 */
export function isEndpointAway(error: unknown): boolean {
  return isConnectionFailure(error) && error instanceof Error && errorCodeOf(error.cause) !== 'ENOTFOUND';
}

/**
 * Maps a transport error from undici or node:net to a MonitorError. `request` = before the answer's
 * headers (the request was being sent, or the server was generating); `answer` = while reading the
 * body. Only failures to connect are ENDPOINT_UNREACHABLE (the router fails over and marks the
 * endpoint down); a connection closed after it was made is a retryable UPSTREAM_ERROR; timeouts are
 * TIMEOUT (not retried: the same request would take as long again).
 */
export function transportError(
  error: unknown,
  ctx: UpstreamContext,
  phase: 'request' | 'answer',
): MonitorError<string> {
  if (error instanceof MonitorError) return error;
  const code = errorCodeOf(error);
  const detail = redactSecret(error instanceof Error ? error.message : String(error), ctx.secret);
  const where = `endpoint ${ctx.endpoint.name}`;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new MonitorError(
      'TIMEOUT',
      `The ${where} sent nothing for too long (${code === 'UND_ERR_HEADERS_TIMEOUT' ? 'no answer headers' : 'the answer stalled'}).`,
      {
        hint: 'Raise timeout_seconds (or "llm.requestTimeoutSeconds"), lower max_tokens, or check that the server is not stuck loading a model.',
        cause: error,
      },
    );
  }
  const closed = code !== undefined && CLOSED_CODES.has(code);
  if (phase === 'answer' && (closed || (code !== undefined && UNREACHABLE_CODES.has(code)))) {
    return new LlmError('UPSTREAM_ERROR', `The connection to ${where} was reset mid-answer (${code}).`, {
      hint: 'Usually transient (the server restarted, or evicted the model mid-generation); it was retried with backoff. If it keeps happening, check the server log.',
      cause: error,
      retryable: true,
    });
  }
  if (closed) {
    return new LlmError('UPSTREAM_ERROR', `The connection to ${where} closed before the answer (${code}).`, {
      hint: 'Usually transient (the server restarted, crashed or evicted the model while generating); it was retried with backoff. If it keeps happening, check the server log.',
      cause: error,
      retryable: true,
    });
  }
  if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    const reason = code === 'ECONNREFUSED' ? 'nothing is listening there (server not running?)' : code;
    return new LlmError('ENDPOINT_UNREACHABLE', `Cannot reach ${where} at ${ctx.endpoint.url}: ${reason}.`, {
      hint: startHint(ctx.endpoint),
      cause: error,
      retryable: true,
    });
  }
  return new LlmError('UPSTREAM_ERROR', `Request to ${where} failed: ${detail}`, { cause: error, retryable: false });
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
    return answerError(
      answer,
      'CONTEXT_OVERFLOW',
      `The prompt does not fit the model's context on ${where}: ${text}`,
      'Send less per prompt: for files pass chunk: true (or chunk_tokens) so each file is split into chunks, shorten the template, lower max_tokens, or load the model with a larger context length.',
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

/**
 * Retryable failures tried once more at most, whatever llm.maxRetries says, by the name they are
 * counted under: an empty answer (often the same again) and a 500 (an overload, or a real bug).
 */
export function retriedOnlyOnce(error: MonitorError<string>): string | undefined {
  if (error.code === 'EMPTY_ANSWER') return 'empty answer';
  if (answeredStatus(error) === 500) return 'HTTP 500';
  return undefined;
}

/** A busy answer whose Retry-After is longer than the pool waits: failed at once, saying when to come back. */
export function retryAfterTooLong(
  error: MonitorError<string>,
  retryAfterMs: number,
  limitMs: number,
): MonitorError<string> {
  const seconds = Math.ceil(retryAfterMs / 1000);
  const message = `${error.message}; it asked to retry after ${seconds} s, longer than monitor-mcp waits (${limitMs / 1000} s), so it was not retried.`;
  const hint = `The server is rate limiting: wait ${seconds} s, then run the failed prompts again with resume_job (include_failed: true).`;
  const status = answeredStatus(error);
  return status === undefined
    ? new LlmError('UPSTREAM_ERROR', message, { hint, cause: error })
    : new UpstreamAnswerError('UPSTREAM_ERROR', message, status, { hint, cause: error });
}

/**
 * Adds the endpoint's models to an unknown-model error when the server's own message does not name
 * them (llama-server, Ollama and LM Studio 0.3.15 only say "not found").
 */
export function withModelList(error: MonitorError<string>, models: readonly string[]): MonitorError<string> {
  if (error.code !== 'MODEL_NOT_FOUND' || models.length === 0 || models.every((m) => error.message.includes(m)))
    return error;
  const listed = `${error.message} Models there: ${models.slice(0, 30).join(', ')}${models.length > 30 ? ', …' : ''}.`;
  const status = answeredStatus(error);
  const options = { hint: error.hint, cause: error };
  return status === undefined
    ? new LlmError('MODEL_NOT_FOUND', listed, options)
    : new UpstreamAnswerError('MODEL_NOT_FOUND', listed, status, options);
}

/** Retry-After in ms when the server sent one with a busy answer. */
export function retryAfterMs(error: unknown): number | undefined {
  return error instanceof BusyError ? error.retryAfterMs : undefined;
}
