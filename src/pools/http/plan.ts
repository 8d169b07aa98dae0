import type { JobPlan } from '../../engine/types.js';
import { isMonitorError, MonitorError, withContext } from '../../errors.js';
import { HttpError } from './errors.js';
import { type ExtractSpec, validateExtract } from './extract.js';
import { allowEntryFor, allowHostHint } from './hosts.js';
import { DEFAULT_HTTP_CONCURRENCY, HTTP_KIND } from './facts.js';
import type { HttpPool } from './pool.js';
import { checkHeader, type HttpJobOptions, type HttpMethod, type HttpTaskInput } from './request.js';
import { mentionsTemplate } from './secrets.js';
import type { HttpSettings } from './settings.js';

/** One request as http_batch takes it. */
export interface HttpRequestArgs {
  url: string;
  method?: HttpMethod | undefined;
  headers?: Readonly<Record<string, string>> | undefined;
  json?: unknown;
  body?: string | undefined;
  extract?: ExtractSpec | undefined;
  timeoutSeconds?: number | undefined;
}

/** What http_batch asks for, before any of it is checked. */
export interface HttpJobRequest {
  requests: readonly HttpRequestArgs[];
  baseUrl?: string | undefined;
  headers?: Readonly<Record<string, string>> | undefined;
  extract?: ExtractSpec | undefined;
  concurrency?: number | undefined;
  perHostConcurrency?: number | undefined;
  timeoutSeconds?: number | undefined;
  maxRetries?: number | undefined;
}

/** The checks the pool applies to every hop, applied at submit too. */
type UrlChecks = Pick<HttpPool, 'checkUrl' | 'checkHeaders'>;

/**
 * Checks an http_batch request and makes the job: every URL absolute and allowed, headers valid,
 * secrets named but never stored. Nothing is sent when any host is refused: the error lists them
 * all, with what the user can do.
 */
export function planHttpJob(request: HttpJobRequest, settings: HttpSettings, checks: UrlChecks): JobPlan {
  checkLimit('concurrency', request.concurrency, 'maxConcurrency', settings.maxConcurrency);
  checkLimit('per_host_concurrency', request.perHostConcurrency, 'perHostConcurrency', settings.perHostConcurrency);
  checkLimit('max_retries', request.maxRetries, 'maxRetries', settings.maxRetries);
  let base: URL | undefined;
  if (request.baseUrl !== undefined) {
    // base_url is part of every URL: a secret there would be sent, logged and stored in clear.
    if (mentionsTemplate(request.baseUrl)) throw secretInUrl('base_url');
    base = parseUrl(request.baseUrl, 'base_url');
    checks.checkUrl(base, 'base_url');
  }
  if (request.headers) checkHeaders(request.headers, 'headers', checks);
  if (request.extract !== undefined) validateExtract(request.extract);

  const inputs: HttpTaskInput[] = [];
  const refusedHosts = new Set<string>();
  request.requests.forEach((one, index) => {
    try {
      if (mentionsTemplate(one.url)) throw secretInUrl('the URL');
      const url = parseUrl(one.url, 'url', base);
      try {
        checks.checkUrl(url);
      } catch (error) {
        if (isMonitorError(error) && error.code === 'HOST_NOT_ALLOWED') {
          refusedHosts.add(allowEntryFor(url));
          return;
        }
        throw error;
      }
      inputs.push(toTaskInput(one, url, checks));
    } catch (error) {
      throw withContext(`requests[${index}]`, error);
    }
  });
  if (refusedHosts.size > 0) {
    const hosts = [...refusedHosts];
    throw new HttpError(
      'HOST_NOT_ALLOWED',
      `Nothing was sent: ${hosts.join(', ')} ${hosts.length === 1 ? 'is' : 'are'} not on the http allowlist${settings.allowHosts.length === 0 ? ' (the allowlist is empty)' : ` (${settings.allowHosts.join(', ')})`}.`,
      { hint: allowHostHint(hosts) },
    );
  }

  const options: HttpJobOptions = {};
  if (request.headers) options.headers = { ...request.headers };
  if (request.extract !== undefined) options.extract = request.extract;
  if (request.timeoutSeconds !== undefined) options.timeoutSeconds = request.timeoutSeconds;
  if (request.perHostConcurrency !== undefined) options.perHostConcurrency = request.perHostConcurrency;
  if (request.maxRetries !== undefined) options.maxRetries = request.maxRetries;
  // Only the default may exceed a lowered limit: it is not the caller's choice, so it runs at the limit.
  return {
    kind: HTTP_KIND,
    inputs,
    options,
    concurrency: request.concurrency ?? Math.min(DEFAULT_HTTP_CONCURRENCY, settings.maxConcurrency),
  };
}

/** A value above the user's limit is refused, naming the limit: never silently lowered. */
function checkLimit(argument: string, value: number | undefined, setting: keyof HttpSettings, limit: number): void {
  if (value === undefined || value <= limit) return;
  throw new MonitorError('INVALID_INPUT', `${argument} ${value} is more than http.${setting} (${limit}).`, {
    hint: `Pass a ${argument} of at most ${limit}, or leave it out. Only the user can raise the limit: "http": {"${setting}": N} in the config file, then restart the server.`,
  });
}

function secretInUrl(where: string): MonitorError {
  return new MonitorError('INVALID_INPUT', `Secrets (\${env:NAME}) are substituted in headers only, not in ${where}.`, {
    hint: 'Send the token in a header, e.g. "Authorization": "Bearer ${env:API_TOKEN}".',
  });
}

function parseUrl(text: string, what: string, base?: URL): URL {
  try {
    return new URL(text, base);
  } catch (error) {
    throw new MonitorError(
      'INVALID_INPUT',
      `Expected ${what} to be an absolute http(s) URL${base ? ' or a path relative to base_url' : ''}, got "${text.slice(0, 200)}".`,
      {
        hint: base ? undefined : 'Write the full URL (https://host/path), or pass base_url and relative paths.',
        cause: error,
      },
    );
  }
}

function checkHeaders(headers: Readonly<Record<string, string>>, where: string, checks: UrlChecks): void {
  try {
    for (const [name, value] of Object.entries(headers)) checkHeader(name, value);
    checks.checkHeaders(headers);
  } catch (error) {
    throw withContext(where, error);
  }
}

/** What is stored for one request: templates, not secrets; bodies serialised; the URL absolute. */
function toTaskInput(request: HttpRequestArgs, url: URL, checks: UrlChecks): HttpTaskInput {
  if (request.json !== undefined && request.body !== undefined) {
    throw new MonitorError('INVALID_INPUT', 'Give either json or body, not both.');
  }
  const headers: Record<string, string> = { ...request.headers };
  checkHeaders(headers, 'headers', checks);
  let body: string | undefined;
  if (request.json !== undefined) {
    body = JSON.stringify(request.json);
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type'))
      headers['content-type'] = 'application/json';
  } else if (request.body !== undefined) {
    body = request.body;
  }
  if (body !== undefined && mentionsTemplate(body)) {
    throw new MonitorError('INVALID_INPUT', 'Secrets (${env:NAME}) are substituted in headers only, not in the body.', {
      hint: 'Send the token in a header, e.g. "Authorization": "Bearer ${env:API_TOKEN}".',
    });
  }
  const method = request.method ?? (body === undefined ? 'GET' : 'POST');
  if (body !== undefined && (method === 'GET' || method === 'HEAD')) {
    throw new MonitorError('INVALID_INPUT', `A ${method} request cannot have a body.`, {
      hint: 'Use POST, PUT or PATCH, or put the data in the query string.',
    });
  }
  if (request.extract !== undefined) validateExtract(request.extract);
  url.hash = '';
  const input: HttpTaskInput = { method, url: url.href };
  if (Object.keys(headers).length > 0) input.headers = headers;
  if (body !== undefined) input.body = body;
  if (request.extract !== undefined) input.extract = request.extract;
  if (request.timeoutSeconds !== undefined) input.timeoutSeconds = request.timeoutSeconds;
  return input;
}
