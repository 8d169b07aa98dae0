import { isMonitorError } from '../../errors.js';
import { HttpError } from './errors.js';
import { type Target, withoutHeaders } from './request.js';

/** Redirect hops followed per request before giving up. */
export const MAX_REDIRECTS = 5;
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Headers that carry credentials; dropped when a redirect leaves the origin they were meant for. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'proxy-authorization']);

/** What a redirect is judged by besides its own answer. */
export interface RedirectRules {
  /** Hops followed so far for this request. */
  hops: number;
  /** Lower-case names of headers that carry a substituted secret (they stay with their origin). */
  secretHeaders: ReadonlySet<string>;
  /** The pool's check of a URL (allowlist, addresses), which every hop passes like the first. */
  checkUrl(url: URL, what: string): void;
}

/** The next hop of a redirect, after the same checks as the first URL. */
export function redirectTarget(from: Target, status: number, location: string, rules: RedirectRules): Target {
  if (rules.hops >= MAX_REDIRECTS) {
    throw new HttpError('REDIRECT_NOT_ALLOWED', `${from.url.href} redirected more than ${MAX_REDIRECTS} times.`, {
      hint: 'Call the final URL directly.',
    });
  }
  const next = checkedLocation(from, status, location, rules);
  let method = from.method;
  let body = from.body;
  let headers = from.headers;
  // As browsers do: 303 turns into GET, and so do 301/302 after a POST.
  if ((status === 303 && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')) {
    method = 'GET';
    body = undefined;
    headers = withoutHeaders(headers, new Set(['content-type']));
  }
  // Credentials were meant for the origin the request named; another origin does not get them.
  if (next.origin !== from.url.origin)
    headers = withoutHeaders(headers, new Set([...CREDENTIAL_HEADERS, ...rules.secretHeaders]));
  return { url: next, method, headers, body };
}

/** The redirect's location as a URL that may be called, or the error saying why not. */
function checkedLocation(from: Target, status: number, location: string, rules: RedirectRules): URL {
  let next: URL;
  try {
    next = new URL(location, from.url);
  } catch (error) {
    throw new HttpError(
      'UPSTREAM_ERROR',
      `${from.url.href} redirected to an unreadable location "${location.slice(0, 200)}".`,
      { cause: error },
    );
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    // Such a URL has no origin to name (file: reads "null"): show the target and its scheme.
    throw new HttpError(
      'REDIRECT_NOT_ALLOWED',
      `${from.url.href} redirected (${status}) to ${next.href.slice(0, 200)}; the ${next.protocol} scheme is refused: only http(s) redirects to allowed hosts are followed.`,
      {
        hint: 'Nothing was read from that target. If the data is reachable over http(s) on an allowed host, request that URL directly.',
      },
    );
  }
  try {
    rules.checkUrl(next, 'redirect target');
  } catch (error) {
    if (!isMonitorError(error)) throw error;
    throw new HttpError(
      'REDIRECT_NOT_ALLOWED',
      `${from.url.href} redirected (${status}) to ${next.origin}, which was refused: ${error.message}`,
      { hint: error.hint, cause: error },
    );
  }
  return next;
}
