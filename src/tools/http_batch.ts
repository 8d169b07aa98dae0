import * as z from 'zod';
import { httpKind } from '../pools/http/index.js';
import { DEFAULT_HTTP_CONCURRENCY } from '../pools/http/plan.js';
import { extractSchema, METHODS } from '../pools/http/request.js';
import { dispatchFields, submitPlan } from './dispatch.js';
import { defineKindTool } from './tool.js';

const MAX_REQUESTS = 1000;

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

export const httpBatchTool = defineKindTool(httpKind, {
  dispatch: true,
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
    concurrency: z.number().int().min(1).optional().describe(`Requests of this job in flight at once (default ${DEFAULT_HTTP_CONCURRENCY}); the per-host limit still applies.`),
    per_host_concurrency: z.number().int().min(1).optional().describe('Lower the per-host limit for this job (default and maximum: the server\'s, usually 4).'),
    timeout_seconds: z.number().positive().max(3600).optional().describe('Default per-attempt timeout of every request (default: the server\'s, usually 30 s).'),
    max_retries: z.number().int().min(0).optional().describe('Retries on 429/503 or a dropped connection (default and maximum: the server\'s, usually 3).'),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    const plan = ctx.kind.plan({
      requests: args.requests.map(({ timeout_seconds: timeoutSeconds, ...request }) => ({ ...request, timeoutSeconds })),
      baseUrl: args.base_url,
      headers: args.headers,
      extract: args.extract,
      concurrency: args.concurrency,
      perHostConcurrency: args.per_host_concurrency,
      timeoutSeconds: args.timeout_seconds,
      maxRetries: args.max_retries,
    });
    return submitPlan(ctx, plan, args);
  },
});
