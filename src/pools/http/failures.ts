import type { TaskError } from '../../errors.js';
import { MonitorError } from '../../errors.js';
import { HttpError } from './errors.js';
import type { HttpMethod } from './request.js';

/** What a request failure is told about: the request as sent. */
export interface RequestLine {
  method: HttpMethod;
  url: URL;
}

/** The `code` of a Node or undici error (ECONNRESET, UND_ERR_…), or "error". */
export function errorCode(error: unknown): string {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : 'error';
}

/** `error` as a TIMEOUT when the attempt's own deadline (not a cancel) ended it; otherwise unchanged. */
export function timedOut(error: unknown, timeout: AbortSignal, timeoutMs: number, target: RequestLine): unknown {
  const code = errorCode(error);
  if (timeout.aborted || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new MonitorError('TIMEOUT', `${target.method} ${target.url.href} took longer than ${timeoutMs / 1000} s.`, {
      hint: 'Pass a larger timeout_seconds for this request, or check that the service is responsive.',
      cause: error,
    });
  }
  return error;
}

/** A plain network error as a MonitorError naming the request. */
export function describeFailure(error: unknown, method: string, url: string): HttpError {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const host = URL.canParse(url) ? new URL(url).host : url;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new HttpError('ENDPOINT_UNREACHABLE', `${host} could not be resolved (${code}).`, {
      hint: 'Check the host name in the URL.',
      cause: error,
    });
  }
  if (code === 'ECONNREFUSED') {
    return new HttpError('ENDPOINT_UNREACHABLE', `${host} refused the connection.`, {
      hint: 'Check the port and that the service is running.',
      cause: error,
    });
  }
  return new HttpError(
    'ENDPOINT_UNREACHABLE',
    `${method} ${url} failed: ${message}${code !== 'error' ? ` (${code})` : ''}.`,
    {
      hint: 'Check the URL and that the service is reachable; failed requests can be run again with resume_job (include failed).',
      cause: error,
    },
  );
}

/** The error of a task whose final answer was not 2xx, with what to do about that status. */
export function statusError(target: RequestLine, status: number, attempts: number): TaskError {
  const what = `${target.method} ${target.url.href} answered ${status}`;
  if (status === 401 || status === 403) {
    return {
      code: 'HTTP_ERROR',
      message: `${what}.`,
      hint: 'The API wants (other) credentials: send them in a header that refers to an env var, e.g. "Authorization": "Bearer ${env:API_TOKEN}".',
    };
  }
  if (status === 404) return { code: 'HTTP_ERROR', message: `${what}.`, hint: 'Check the URL (path and query).' };
  if (status === 429 || status === 503) {
    return {
      code: 'HTTP_ERROR',
      message: `${what} after ${attempts} attempt(s).`,
      hint: 'The API is rate limiting or overloaded: wait, then run the failed requests again with resume_job (include failed).',
    };
  }
  if (status >= 500)
    return {
      code: 'HTTP_ERROR',
      message: `${what}.`,
      hint: 'A server-side error: retry later with resume_job (include failed).',
    };
  return {
    code: 'HTTP_ERROR',
    message: `${what}.`,
    hint: 'The value holds the response body preview; the full body is in files.output when large.',
  };
}
