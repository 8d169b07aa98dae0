import { isUtf8 } from 'node:buffer';
import type { Dispatcher } from 'undici';
import { parseRetryAfter } from '../retry.js';
import { markLossy } from './decoding.js';
import { extractUpstreamError, upstreamError } from './error-answers.js';
import { LlmError } from './errors.js';
import { EmptyBodyError, redactSecret, transportError, UpstreamAnswerError, type UpstreamContext } from './upstream.js';

/** Bodies of error answers and model lists are small; answers are bounded by max_tokens, this is the backstop. */
export const MAX_JSON_BYTES = 32 * 1024 * 1024;
const MAX_ERROR_BYTES = 64 * 1024;

/** Drops a body we will not read: closes its connection without an unhandled 'error' event. */
export function abandon(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

export function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Reads a whole body as text, refusing more than `limit` bytes. */
async function readText(
  response: Dispatcher.ResponseData,
  ctx: UpstreamContext,
  signal: AbortSignal,
  limit: number,
): Promise<{ text: string; lossy: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      size += buffer.length;
      if (size > limit) {
        abandon(response.body);
        throw new LlmError('RESPONSE_TOO_LARGE', `Endpoint ${ctx.endpoint.name} sent more than ${limit} bytes.`);
      }
      chunks.push(buffer);
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw transportError(error, ctx, 'answer');
  }
  const bytes = Buffer.concat(chunks);
  return { text: bytes.toString('utf8'), lossy: !isUtf8(bytes) };
}

/** Parses a JSON answer; any `error` in it (whatever the status) becomes a MonitorError. */
export async function readJson(
  response: Dispatcher.ResponseData,
  ctx: UpstreamContext,
  signal: AbortSignal,
): Promise<unknown> {
  const name = ctx.endpoint.name;
  const status = response.statusCode;
  const ok = status >= 200 && status < 300;
  const { text, lossy } = await readText(response, ctx, signal, ok ? MAX_JSON_BYTES : MAX_ERROR_BYTES);
  let parsed: unknown;
  try {
    parsed = text.length === 0 ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  // Invalid bytes were decoded as U+FFFD: the answer built from this body says so (decoding.ts).
  if (lossy) markLossy(parsed);
  const error = extractUpstreamError(parsed);
  const retryAfter = parseRetryAfter(headerText(response.headers['retry-after']));
  if (error) throw upstreamError(status, error, ctx, retryAfter);
  if (!ok) throw upstreamError(status, { message: text.slice(0, 500) || `HTTP ${status}` }, ctx, retryAfter);
  if (text.trim().length === 0) {
    // A hiccup, not a wrong URL (a wrong path gets an error body, even from LM Studio): worth retrying.
    throw new EmptyBodyError(
      'UPSTREAM_ERROR',
      `Endpoint ${name} answered status ${status} with an empty body (no JSON at all).`,
      status,
      {
        hint: 'A server hiccup (seen under load, or while the server swaps models); it was retried once. If it keeps happening, check the server log and that the model is loaded, then run the failed prompts again with resume_job (include_failed: true).',
        retryable: true,
      },
    );
  }
  if (parsed === undefined) {
    throw new UpstreamAnswerError(
      'UPSTREAM_ERROR',
      `Endpoint ${name} sent a body that is not JSON: ${JSON.stringify(redactSecret(text.slice(0, 200), ctx.secret))}`,
      status,
      {
        hint: 'Check that the endpoint URL points at an OpenAI-compatible server (base address, without /v1).',
      },
    );
  }
  return parsed;
}
