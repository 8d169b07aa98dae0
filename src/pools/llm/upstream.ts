import { MonitorError } from '../../errors.js';
import type { EndpointConfig } from '../../config.js';

/** What the error mapping needs to know about the endpoint and the request. */
export interface UpstreamContext {
  endpoint: Pick<EndpointConfig, 'name' | 'url' | 'flavor' | 'apiKeyEnv'>;
  model?: string;
  /** True when a bearer token was sent (a 401 then means the token is wrong, not missing). */
  tokenSent: boolean;
  /** Models the endpoint listed, for "unknown model" messages. */
  knownModels?: readonly string[];
}

/** 429/503 and friends: transient, retried after the server's Retry-After when it sent one. */
export class BusyError extends MonitorError {
  readonly retryAfterMs: number | undefined;

  constructor(message: string, retryAfterSeconds?: number) {
    super('UPSTREAM_ERROR', message, {
      hint: 'The server is busy or still loading the model; it was retried with backoff. Lower `concurrency` or the endpoint\'s concurrency if this persists.',
      retryable: true,
    });
    this.retryAfterMs = retryAfterSeconds === undefined ? undefined : retryAfterSeconds * 1000;
  }
}

/** The parts of an error body worth keeping: every server spells it differently. */
export interface UpstreamErrorBody {
  message: string;
  type?: string;
  code?: string;
}

/**
 * Finds the error in a response body, if there is one: `{"error":"…"}`, `{"error":{message,type,code}}`,
 * vLLM's older `{"object":"error","message":…}`, or FastAPI's `{"detail":…}`. LM Studio sends
 * some of these with status 200, so callers check every body.
 */
export function extractUpstreamError(body: unknown): UpstreamErrorBody | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const record = body as Record<string, unknown>;
  const error = record.error;
  if (typeof error === 'string') return { message: error };
  if (typeof error === 'object' && error !== null) {
    const e = error as Record<string, unknown>;
    const out: UpstreamErrorBody = { message: typeof e.message === 'string' ? e.message : JSON.stringify(error) };
    if (typeof e.type === 'string') out.type = e.type;
    if (typeof e.code === 'string' || typeof e.code === 'number') out.code = String(e.code);
    return out;
  }
  if (record.object === 'error' && typeof record.message === 'string') {
    const out: UpstreamErrorBody = { message: record.message };
    if (typeof record.type === 'string') out.type = record.type;
    if (typeof record.code === 'string' || typeof record.code === 'number') out.code = String(record.code);
    return out;
  }
  if (typeof record.detail === 'string') return { message: record.detail };
  return undefined;
}

function startHint(endpoint: UpstreamContext['endpoint']): string {
  return endpoint.flavor === 'lmstudio'
    ? `Start LM Studio's server: in LM Studio open the Developer tab and switch "Status" to Running, or run \`lms server start\` (headless: \`lms daemon up\` first). If it runs elsewhere, point monitor-mcp at it with --lmstudio-url or "llm.endpoints" in the config file (now ${endpoint.url}).`
    : `Start the server at ${endpoint.url} (llama-server, \`ollama serve\`, vLLM, …) or fix the endpoint URL in the config file ("llm.endpoints") or --endpoint.`;
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT',
  'ECONNABORTED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
]);

function errorCodeOf(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return e.code;
    e = typeof e === 'object' && e !== null && 'cause' in e ? e.cause : undefined;
  }
  return undefined;
}

/** True for failures where the request may never have reached the server: another endpoint can take it. */
export function isConnectionFailure(error: unknown): boolean {
  return error instanceof MonitorError && error.code === 'ENDPOINT_UNREACHABLE';
}

/**
 * Maps a transport error from undici or node:net to a MonitorError. Connection failures are
 * ENDPOINT_UNREACHABLE (retryable, and the router fails over); timeouts are TIMEOUT (not retried:
 * the same request would take as long again).
 */
export function transportError(error: unknown, ctx: UpstreamContext, phase: 'connect' | 'answer'): MonitorError {
  if (error instanceof MonitorError) return error;
  const code = errorCodeOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new MonitorError('TIMEOUT', `Endpoint ${ctx.endpoint.name} sent nothing for too long (${code === 'UND_ERR_HEADERS_TIMEOUT' ? 'no answer headers' : 'the answer stalled'}).`, {
      hint: 'Raise timeout_seconds (or "llm.requestTimeoutSeconds"), lower max_tokens, or check that the server is not stuck loading a model.',
      cause: error,
    });
  }
  if (phase === 'answer' && (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE' || code === 'UND_ERR_CLOSED')) {
    return new MonitorError('UPSTREAM_ERROR', `The connection to endpoint ${ctx.endpoint.name} was reset mid-answer (${code}).`, {
      hint: 'Usually transient (the server restarted, or evicted the model mid-generation); it was retried. If it keeps happening, check the server log.',
      cause: error,
      retryable: true,
    });
  }
  if (code !== undefined && CONNECTION_CODES.has(code)) {
    const reason = code === 'ECONNREFUSED' ? 'nothing is listening there (server not running?)' : code;
    return new MonitorError('ENDPOINT_UNREACHABLE', `Cannot reach endpoint ${ctx.endpoint.name} at ${ctx.endpoint.url}: ${reason}.`, {
      hint: startHint(ctx.endpoint),
      cause: error,
      retryable: true,
    });
  }
  return new MonitorError('UPSTREAM_ERROR', `Request to endpoint ${ctx.endpoint.name} failed: ${detail}`, { cause: error, retryable: false });
}

/** Maps an error answer (any status, including 200 carrying `error`) to a MonitorError with a next step. */
export function upstreamError(status: number, body: UpstreamErrorBody, ctx: UpstreamContext, retryAfterSeconds?: number): MonitorError {
  const where = `endpoint ${ctx.endpoint.name}`;
  const text = body.message.trim();
  const lower = text.toLowerCase();
  const type = (body.type ?? '').toLowerCase();
  const code = (body.code ?? '').toLowerCase();
  const statusText = status === 200 ? 'status 200 carrying an error' : `HTTP ${status}`;
  const known = ctx.knownModels && ctx.knownModels.length > 0 ? ` Models there: ${ctx.knownModels.slice(0, 20).join(', ')}.` : '';

  if (status === 401 || status === 403 || code === 'invalid_api_key' || /api token|api key/.test(lower)) {
    const env = ctx.endpoint.apiKeyEnv;
    const hint = ctx.tokenSent
      ? `The token in ${env ?? 'the configured env var'} was refused: create a new one (LM Studio: Developer → Server Settings → Manage Tokens) and restart monitor-mcp with it.`
      : env
        ? `Set ${env} to the server's API token in monitor-mcp's environment (e.g. \`claude mcp add -e ${env}=… monitor-mcp -- …\`), or turn off "Require Authentication" in LM Studio's server settings.`
        : `Add "apiKeyEnv": "<ENV_VAR_NAME>" to this endpoint in the config file and set that variable to the token.`;
    return new MonitorError('AUTH_REQUIRED', `${where} refused the request (${statusText}): ${text}`, { hint });
  }
  if (/no models? (are )?loaded/.test(lower)) {
    return new MonitorError('MODEL_NOT_LOADED', `${where} has no model loaded: ${text}`, {
      hint: 'Load a model (LM Studio: Developer tab → Select a model, or `lms load <model>`), or pass `model` with a downloaded model so LM Studio loads it just in time. lmstudio_models lists what is there.',
    });
  }
  if (code === 'model_not_found' || /invalid model identifier|model .*not found|model_not_found|does not exist|unknown model/.test(lower)) {
    return new MonitorError('MODEL_NOT_FOUND', `${where} does not serve model "${ctx.model ?? '?'}": ${text}${known}`, {
      hint: 'Pass one of the listed models as `model` (lmstudio_models shows each endpoint\'s models), or download it first (`lms get <model>`).',
    });
  }
  if (type.includes('exceed_context') || /context (length|size|window)|n_keep|n_ctx|too many tokens|maximum context|context.*exceeded|prompt is too long|longer than the (model'?s )?context/.test(lower)) {
    return new MonitorError('CONTEXT_OVERFLOW', `The prompt does not fit the model's context on ${where}: ${text}`, {
      hint: 'Send less per prompt: for files pass chunk: true (or chunk_tokens) so each file is split into chunks, shorten the template, lower max_tokens, or load the model with a larger context length.',
    });
  }
  if (/unexpected endpoint or method/.test(lower)) {
    return new MonitorError('UPSTREAM_ERROR', `${where} does not know this path (${statusText}): ${text}`, {
      hint: `The endpoint URL should be the server's base address without /v1 (now ${ctx.endpoint.url}); fix it in the config file or --lmstudio-url/--endpoint.`,
    });
  }
  if (status === 429 || status === 503 || status === 502 || status === 504 || /loading model/.test(lower)) {
    return new BusyError(`${where} is busy or unavailable (${statusText}): ${text}`, retryAfterSeconds);
  }
  if (/crash/.test(lower)) {
    return new MonitorError('UPSTREAM_ERROR', `The model crashed on ${where}: ${text}`, {
      hint: 'Reload the model (LM Studio: eject and load again, or `lms unload --all && lms load <model>`), maybe with a smaller context length, then resume_job with failed: true.',
    });
  }
  return new MonitorError('UPSTREAM_ERROR', `${where} answered with an error (${statusText}): ${text}`, {
    hint: 'Check the request options (json_schema, stop, max_tokens) and the server log.',
  });
}

/** Retry-After in ms when the server sent one with a 429/503. */
export function retryAfterMs(error: unknown): number | undefined {
  return error instanceof BusyError ? error.retryAfterMs : undefined;
}

export { startHint as serverStartHint };
