import * as z from 'zod';
import { DEFAULT_HTTP_CONCURRENCY, extractSchema, HTTP_MAX_TASKS, httpKind, METHODS } from '../pools/http/index.js';
import { dispatchFields, submitPlan } from './dispatch.js';
import { type ListFileSpec, requiredListOrFile, withFileLine } from './inputs_file.js';
import { defineKindTool, taskCapOf } from './tool.js';

const headersSchema = z.record(z.string(), z.string());

const requestSchema = z.strictObject({
  url: z.string().min(1).describe('Absolute http(s) URL, or a path relative to base_url.'),
  method: z.enum(METHODS).optional().describe('Default GET, or POST with a body.'),
  headers: headersSchema.optional().describe('Its own headers.'),
  json: z.unknown().optional().describe('A JSON body.'),
  body: z.string().optional().describe('A text body (set content-type).'),
  extract: extractSchema.optional().describe('Its own extract.'),
  timeout_seconds: z.number().positive().max(3600).optional().describe('Its own timeout per attempt.'),
});

const REQUESTS_FILE: Omit<ListFileSpec<z.infer<typeof requestSchema>>, 'cap'> = {
  argument: 'requests_file',
  list: 'requests',
  element: requestSchema,
  example: '{"url": "https://api.github.com/repos/o/r"}',
};

export const httpBatchTool = defineKindTool(httpKind, {
  dispatch: true,
  name: 'http_batch',
  title: 'Run HTTP API requests in parallel',
  description: [
    'Sends HTTP requests to web APIs concurrently as one background job; returns a job_id at once, then collect_results.',
    "Only hosts on the user's allowlist (private addresses only if allowed); a refused host fails the call.",
    'Secrets: ${env:NAME} in a header; only env vars the user allowed, never in results.',
    "A result's value: status, ok, url, some headers, json (parsed body or what extract keeps) or text (cut: true: its start; all in files.output).",
  ].join(' '),
  inputSchema: {
    requests: z
      .array(requestSchema)
      .min(1)
      .max(HTTP_MAX_TASKS)
      .optional()
      .describe(`One task each (1–${HTTP_MAX_TASKS}).`),
    requests_file: z.string().min(1).optional().describe('Instead of requests: a JSONL file, one per line.'),
    base_url: z.string().optional().describe('Base of relative urls.'),
    headers: headersSchema.optional().describe("Headers for every request (a request's own win)."),
    extract: extractSchema
      .optional()
      .describe(
        'Keep part of each JSON body: a JSON pointer ("/items"), field paths (["number", "user.login"], per array element) or {"pointer", "fields"}.',
      ),
    concurrency: z.number().int().min(1).optional().describe(`Requests at once (default ${DEFAULT_HTTP_CONCURRENCY}).`),
    per_host_concurrency: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('A lower per-host limit (default and most: usually 4).'),
    timeout_seconds: z.number().positive().max(3600).optional().describe('Timeout per attempt (default 30 s).'),
    max_retries: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Retries on 429/503 (after Retry-After) or a dropped connection (default and most: 3).'),
    ...dispatchFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx) {
    const requestsFile = { ...REQUESTS_FILE, cap: taskCapOf(ctx) };
    const requests = await requiredListOrFile(requestsFile, args.requests, args.requests_file, ctx.config, ctx.signal);
    let plan: ReturnType<typeof ctx.kind.plan>;
    try {
      plan = ctx.kind.plan({
        requests: requests.items.map(({ timeout_seconds: timeoutSeconds, ...request }) => ({
          ...request,
          timeoutSeconds,
        })),
        baseUrl: args.base_url,
        headers: args.headers,
        extract: args.extract,
        concurrency: args.concurrency,
        perHostConcurrency: args.per_host_concurrency,
        timeoutSeconds: args.timeout_seconds,
        maxRetries: args.max_retries,
      });
    } catch (error) {
      throw withFileLine(error, requestsFile, requests);
    }
    return submitPlan(ctx, plan, args);
  },
});
