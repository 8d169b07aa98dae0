import * as z from 'zod';
import { MonitorError } from '../../errors.js';
import type { ExtractSpec } from './extract.js';

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export type HttpMethod = (typeof METHODS)[number];

/** What http_batch accepts as `extract` and what is stored with a job: one schema for both. */
export const extractSchema = z.union([
  z.string(),
  z.array(z.string()),
  z.strictObject({ pointer: z.string().optional(), fields: z.array(z.string()).optional() }),
]);

/**
 * One request as stored with the job. Header values keep their `${env:NAME}` templates: secrets
 * are substituted only in memory, at send time.
 */
const taskInputSchema = z.object({
  method: z.enum(METHODS),
  url: z.string(),
  headers: z.record(z.string(), z.string()).optional(),
  /** The request body, already serialised (JSON bodies come with their content-type header). */
  body: z.string().optional(),
  extract: extractSchema.optional(),
  timeoutSeconds: z.number().positive().optional(),
});
export type HttpTaskInput = z.infer<typeof taskInputSchema>;

/** Settings shared by every request of a job. */
const jobOptionsSchema = z.object({
  headers: z.record(z.string(), z.string()).optional(),
  extract: extractSchema.optional(),
  timeoutSeconds: z.number().positive().optional(),
  perHostConcurrency: z.number().int().min(1).optional(),
  maxRetries: z.number().int().min(0).optional(),
});
export type HttpJobOptions = z.infer<typeof jobOptionsSchema>;

export function parseTaskInput(input: unknown): HttpTaskInput {
  const parsed = taskInputSchema.safeParse(input);
  if (!parsed.success)
    throw new MonitorError('INVALID_INPUT', `This stored http request is not readable: ${parsed.error.message}`);
  return parsed.data;
}

export function parseJobOptions(options: unknown): HttpJobOptions {
  const parsed = jobOptionsSchema.safeParse(options ?? {});
  if (!parsed.success)
    throw new MonitorError('INVALID_INPUT', `This http job's stored options are not readable: ${parsed.error.message}`);
  return parsed.data;
}

export function extractOf(input: HttpTaskInput, options: HttpJobOptions): ExtractSpec | undefined {
  return input.extract ?? options.extract;
}

/**
 * Responses are always asked for uncompressed: a compressed body could be neither redacted nor
 * parsed as JSON. The pool sends this on every request; a request cannot set its own.
 */
export const ACCEPT_ENCODING = 'identity';

/** Headers the connection manages itself; setting them would desync or redirect the request. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'accept-encoding',
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-authorization',
  'proxy-connection',
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Throws INVALID_INPUT for a header name or value that cannot or must not be sent. */
export function checkHeader(name: string, value: string): void {
  if (!TOKEN.test(name)) throw new MonitorError('INVALID_INPUT', `"${name}" is not a valid header name.`);
  if (RESERVED_HEADERS.has(name.toLowerCase())) {
    throw new MonitorError('INVALID_INPUT', `The ${name} header is managed by the HTTP client and cannot be set.`, {
      hint:
        name.toLowerCase() === 'accept-encoding'
          ? 'Leave it out; responses are always requested uncompressed, so secrets can be redacted and JSON parsed.'
          : 'Leave it out; the URL decides the host, and the body its length.',
    });
  }
  if (/[\r\n\0]/.test(value))
    throw new MonitorError('INVALID_INPUT', `The value of header ${name} contains a line break or NUL byte.`);
}

/** Request headers over shared ones, by case-insensitive name. */
export function mergeHeaders(
  shared: Readonly<Record<string, string>> | undefined,
  own: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const out = new Map<string, [string, string]>();
  for (const source of [shared, own]) {
    for (const [name, value] of Object.entries(source ?? {})) out.set(name.toLowerCase(), [name, value]);
  }
  return Object.fromEntries(out.values());
}

/** Response headers worth showing: content facts, pagination, rate limits. The rest stays out of the result. */
export const KEPT_RESPONSE_HEADERS: readonly string[] = [
  'content-type',
  'content-length',
  'content-encoding',
  'etag',
  'last-modified',
  'link',
  'location',
  'retry-after',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'ratelimit-remaining',
  'ratelimit-reset',
];

/** A header as one string (undici gives repeated headers as a list). */
export function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** `headers` without the ones named in `names` (lower case), whatever their case. */
export function withoutHeaders(
  headers: Readonly<Record<string, string>>,
  names: ReadonlySet<string>,
): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.has(name.toLowerCase())));
}

/** One hop's request as it is sent: secrets substituted, headers as a redirect left them. */
export interface Target {
  url: URL;
  method: HttpMethod;
  headers: Record<string, string>;
  body: string | undefined;
}
