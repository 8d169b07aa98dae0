import * as z from 'zod';
import { isMonitorError, MonitorError } from '../errors.js';
import { validateExtract, type ExtractSpec } from '../pools/http/extract.js';
import { allowEntryFor, allowHostHint } from '../pools/http/hosts.js';
import { checkHeader, extractSchema, METHODS, type HttpJobOptions, type HttpTaskInput } from '../pools/http/request.js';
import { mentionsTemplate } from '../pools/http/secrets.js';
import { dispatchFields, dispatchReply } from './collect_results.js';
import { defineTool } from './tool.js';

const MAX_REQUESTS = 1000;
const DEFAULT_CONCURRENCY = 16;

const headersSchema = z
  .record(z.string(), z.string())
  .describe('Header name → value. A secret is written as ${env:NAME} inside the value (e.g. "Authorization": "Bearer ${env:GITHUB_TOKEN}"): the server substitutes it from its environment and redacts it from every output. Never paste a secret itself.');

const requestSchema = z.strictObject({
  url: z.string().min(1).describe('Absolute http(s) URL, or a path relative to base_url. Its host must be on the user\'s allowlist.'),
  method: z.enum(METHODS).optional().describe('HTTP method. Default GET, or POST when json or body is given.'),
  headers: headersSchema.optional(),
  json: z.unknown().optional().describe('A JSON request body (sent with content-type application/json unless headers set one).'),
  body: z.string().optional().describe('A text request body, sent as is (set content-type in headers). Use either json or body.'),
  extract: extractSchema.optional(),
  timeout_seconds: z.number().positive().max(3600).optional().describe('This request\'s timeout per attempt, from sending to the last body byte.'),
});

export const httpBatchTool = defineTool({
  name: 'http_batch',
  title: 'Run HTTP API requests in parallel',
  description: [
    'Sends a batch of HTTP requests to web APIs (issue trackers, package registries, internal services) concurrently, as one background job, and returns a job_id at once; collect the responses with collect_results.',
    'Only hosts on the user\'s allowlist can be called, and private or loopback addresses only if the user allowed them; a refused host fails the whole call with instructions for the user.',
    'Up to a few requests run at once per host; 429 and 503 answers are retried after the Retry-After delay. Redirects are followed only to allowed hosts.',
    'Secrets: put ${env:NAME} in a header value (e.g. "Authorization": "Bearer ${env:GITHUB_TOKEN}"); only env vars the user allowed can be used, and their values never appear in results.',
    'Each result\'s value has status, ok, the final url, a few headers (content-type, link, rate limits), and json (the parsed body, or just what `extract` selects) or a text preview; a large body is saved to the file in files.body.',
    'Use extract to keep results small, e.g. ["number", "title", "user.login"] for a list of issues.',
  ].join(' '),
  inputSchema: {
    requests: z.array(requestSchema).min(1).max(MAX_REQUESTS).describe(`The requests, one task each (1 to ${MAX_REQUESTS}); results keep this order's indices.`),
    base_url: z.string().optional().describe('Resolves relative request urls, e.g. "https://api.github.com" with url "/repos/o/r/issues".'),
    headers: headersSchema.optional().describe('Headers sent with every request (a request\'s own headers win). Same ${env:NAME} rule for secrets.'),
    extract: extractSchema.optional().describe('Default extract for every request (a request\'s own extract wins).'),
    concurrency: z.number().int().min(1).optional().describe(`Requests of this job in flight at once (default ${DEFAULT_CONCURRENCY}); the per-host limit still applies.`),
    per_host_concurrency: z.number().int().min(1).optional().describe('Lower the per-host limit for this job (default and maximum: the server\'s, usually 4).'),
    timeout_seconds: z.number().positive().max(3600).optional().describe('Default per-attempt timeout of every request (default: the server\'s, usually 30 s).'),
    max_retries: z.number().int().min(0).optional().describe('Retries on 429/503 or a dropped connection (default and maximum: the server\'s, usually 3).'),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    const http = ctx.services.http;
    const settings = ctx.config.http;
    let base: URL | undefined;
    if (args.base_url !== undefined) {
      base = parseUrl(args.base_url, 'base_url');
      http.checkUrl(base, 'base_url');
    }
    if (args.headers) checkHeaders(args.headers, 'headers', http);
    if (args.extract !== undefined) validateExtract(args.extract);

    const inputs: HttpTaskInput[] = [];
    const refusedHosts = new Set<string>();
    args.requests.forEach((request, index) => {
      const where = `requests[${index}]`;
      try {
        if (mentionsTemplate(request.url)) {
          throw new MonitorError('INVALID_INPUT', 'Secrets (${env:NAME}) are substituted in headers only, not in the URL.', {
            hint: 'Send the token in a header, e.g. "Authorization": "Bearer ${env:API_TOKEN}".',
          });
        }
        const url = parseUrl(request.url, 'url', base);
        try {
          http.checkUrl(url);
        } catch (error) {
          if (isMonitorError(error) && error.code === 'HOST_NOT_ALLOWED') {
            refusedHosts.add(allowEntryFor(url));
            return;
          }
          throw error;
        }
        inputs.push(toTaskInput(request, url, http));
      } catch (error) {
        throw prefixed(where, error);
      }
    });
    if (refusedHosts.size > 0) {
      const hosts = [...refusedHosts];
      throw new MonitorError(
        'HOST_NOT_ALLOWED',
        `Nothing was sent: ${hosts.join(', ')} ${hosts.length === 1 ? 'is' : 'are'} not on the http allowlist${settings.allowHosts.length === 0 ? ' (the allowlist is empty)' : ` (${settings.allowHosts.join(', ')})`}.`,
        { hint: allowHostHint(hosts) },
      );
    }

    const options: HttpJobOptions = {};
    if (args.headers) options.headers = args.headers;
    if (args.extract !== undefined) options.extract = args.extract;
    if (args.timeout_seconds !== undefined) options.timeoutSeconds = args.timeout_seconds;
    if (args.per_host_concurrency !== undefined) options.perHostConcurrency = Math.min(args.per_host_concurrency, settings.perHostConcurrency);
    if (args.max_retries !== undefined) options.maxRetries = Math.min(args.max_retries, settings.maxRetries);
    const job = await ctx.engine.submit({
      kind: http.kind,
      inputs,
      options,
      concurrency: Math.min(args.concurrency ?? DEFAULT_CONCURRENCY, settings.maxConcurrency),
      ...(args.label === undefined ? {} : { label: args.label }),
    });
    return dispatchReply(ctx, job.id, args.wait_seconds);
  },
});

type RequestArgs = z.infer<typeof requestSchema>;

function parseUrl(text: string, what: string, base?: URL): URL {
  try {
    return new URL(text, base);
  } catch {
    throw new MonitorError('INVALID_INPUT', `Expected ${what} to be an absolute http(s) URL${base ? ' or a path relative to base_url' : ''}, got "${text.slice(0, 200)}".`, {
      hint: base ? undefined : 'Write the full URL (https://host/path), or pass base_url and relative paths.',
    });
  }
}

function checkHeaders(headers: Readonly<Record<string, string>>, where: string, http: { checkHeaders(h: Readonly<Record<string, string>>): void }): void {
  try {
    for (const [name, value] of Object.entries(headers)) checkHeader(name, value);
    http.checkHeaders(headers);
  } catch (error) {
    throw prefixed(where, error);
  }
}

/** A MonitorError with the place it concerns (`requests[3]: …`) in front of its message; anything else unchanged. */
function prefixed(where: string, error: unknown): unknown {
  return isMonitorError(error) ? new MonitorError(error.code, `${where}: ${error.message}`, error.hint === undefined ? {} : { hint: error.hint }) : error;
}

/** What is stored for one request: templates, not secrets; bodies serialised; the URL absolute. */
function toTaskInput(request: RequestArgs, url: URL, http: { checkHeaders(h: Readonly<Record<string, string>>): void }): HttpTaskInput {
  if (request.json !== undefined && request.body !== undefined) {
    throw new MonitorError('INVALID_INPUT', 'Give either json or body, not both.');
  }
  const headers: Record<string, string> = { ...request.headers };
  checkHeaders(headers, 'headers', http);
  let body: string | undefined;
  if (request.json !== undefined) {
    body = JSON.stringify(request.json);
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
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
    throw new MonitorError('INVALID_INPUT', `A ${method} request cannot have a body.`, { hint: 'Use POST, PUT or PATCH, or put the data in the query string.' });
  }
  if (request.extract !== undefined) validateExtract(request.extract);
  url.hash = '';
  const input: HttpTaskInput = { method, url: url.href };
  if (Object.keys(headers).length > 0) input.headers = headers;
  if (body !== undefined) input.body = body;
  if (request.extract !== undefined) input.extract = request.extract satisfies ExtractSpec;
  if (request.timeout_seconds !== undefined) input.timeoutSeconds = request.timeout_seconds;
  return input;
}
