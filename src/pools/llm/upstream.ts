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

/** A 2xx answer with no body at all: retried once at most, as an empty answer is (retriedOnlyOnce). */
export class EmptyBodyError extends UpstreamAnswerError {}

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

/**
 * Retryable failures tried once more at most, whatever llm.maxRetries says, by the name they are
 * counted under: an empty answer (often the same again) and a 500 (an overload, or a real bug).
 */
export function retriedOnlyOnce(error: MonitorError<string>): string | undefined {
  if (error.code === 'EMPTY_ANSWER' || error instanceof EmptyBodyError) return 'empty answer';
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
