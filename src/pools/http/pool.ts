import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Agent, type Dispatcher } from 'undici';
import type { Pool, TaskContext, TaskResult } from '../../engine/types.js';
import { isMonitorError, MonitorError, toTaskError, type TaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { shortLabel } from '../kind.js';
import { decideRetry, parseRetryAfter, type RetryPolicy, retryDelayMs, sleep } from '../retry.js';
import { checkedLookup, checkLiteralHost } from './addresses.js';
import { readBody, type ReadBody } from './body.js';
import { HttpError } from './errors.js';
import { applyExtract, type ExtractSpec } from './extract.js';
import { allowEntryFor, allowHostHint, hostKey, isHostAllowed, parseHostPatterns, type HostPattern } from './hosts.js';
import {
  ACCEPT_ENCODING,
  extractOf,
  KEPT_RESPONSE_HEADERS,
  mergeHeaders,
  parseJobOptions,
  parseTaskInput,
  type HttpMethod,
} from './request.js';
import { isRetryableError, RETRY_STATUSES } from './retry.js';
import {
  checkSecretNames,
  mentionsTemplate,
  Redactor,
  referencedEnvNames,
  substituteHeaders,
  type Env,
} from './secrets.js';
import { KeyedSemaphore } from './semaphore.js';
import type { HttpSettings } from './settings.js';

export const HTTP_KIND = 'http';

/** Backoff between retries of one request; a Retry-After past http.maxRetryAfterSeconds fails it instead. */
export const HTTP_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

/** Redirect hops followed per request before giving up. */
export const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Headers that carry credentials; dropped when a redirect leaves the origin they were meant for. */
const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'proxy-authorization']);

export interface HttpPoolOptions {
  settings: HttpSettings;
  /** Where `${env:NAME}` values come from; read at send time, never stored. */
  env: Env;
  log: Logger;
}

/** One response on its way: the host slot is held until the body is read or discarded. */
interface Exchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** The attempt's own deadline, to tell a timeout from a cancel. */
  timeout: AbortSignal;
  release(): void;
}

/** One task's request as it runs: its limits, its secrets' redactor, and what happened so far. */
interface RequestRun {
  task: TaskContext;
  started: number;
  timeoutMs: number;
  perHost: number;
  maxRetries: number;
  extract: ExtractSpec | undefined;
  redactor: Redactor;
  /** Lower-case names of headers that carry a substituted secret. */
  secretHeaders: ReadonlySet<string>;
  attempts: number;
  /** Retries spent so far (429/503, dropped connections, bodies cut off), over all hops. */
  retries: number;
  redirects: string[];
}

interface Target {
  url: URL;
  method: HttpMethod;
  headers: Record<string, string>;
  body: string | undefined;
}

/**
 * The `http` worker kind: each task is one HTTP request, checked against the allowlist and the
 * address rules on every hop, limited per host, retried on 429/503, its body streamed to a file.
 */
export class HttpPool implements Pool {
  readonly kind = HTTP_KIND;
  readonly concurrency: number;
  private readonly settings: HttpSettings;
  private readonly env: Env;
  private readonly log: Logger;
  private readonly patterns: HostPattern[];
  private readonly policy: RetryPolicy;
  private readonly hostSlots = new KeyedSemaphore();
  private agent: Agent | undefined;

  constructor(options: HttpPoolOptions) {
    this.settings = options.settings;
    this.env = options.env;
    this.log = options.log;
    this.concurrency = options.settings.maxConcurrency;
    this.patterns = parseHostPatterns(options.settings.allowHosts);
    this.policy = {
      maxRetries: options.settings.maxRetries,
      ...HTTP_BACKOFF,
      maxRetryAfterMs: options.settings.maxRetryAfterSeconds * 1000,
    };
  }

  /**
   * Throws unless the URL may be called: http(s), no credentials in it, host on the allowlist,
   * and — for an IP literal — a public address unless private ones are allowed. Names are checked
   * again when they resolve, at connect time.
   */
  checkUrl(url: URL, what = 'URL'): void {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new MonitorError(
        'INVALID_INPUT',
        `Expected an http or https ${what}, got "${url.protocol}" in ${url.href}.`,
      );
    }
    if (url.username !== '' || url.password !== '') {
      throw new MonitorError(
        'INVALID_INPUT',
        `The ${what} ${url.origin} carries a user name or password; they would be stored with the job.`,
        {
          hint: 'Pass credentials in a header that refers to an env var instead, e.g. "Authorization": "Bearer ${env:API_TOKEN}".',
        },
      );
    }
    if (!isHostAllowed(url, this.patterns)) {
      const entry = allowEntryFor(url);
      throw new HttpError(
        'HOST_NOT_ALLOWED',
        `${entry} is not on the http allowlist${this.patterns.length === 0 ? ' (the allowlist is empty)' : ''}.`,
        {
          hint: allowHostHint([entry]),
        },
      );
    }
    checkLiteralHost(url.hostname, this.settings.allowPrivateAddresses);
  }

  /** Throws SECRET_NOT_SET when a header refers to an env var that is not allowed or not set. */
  checkHeaders(headers: Readonly<Record<string, string>>): void {
    for (const value of Object.values(headers))
      checkSecretNames(referencedEnvNames(value), this.settings.secretEnv, this.env);
  }

  async run(task: TaskContext): Promise<TaskResult> {
    const started = Date.now();
    const input = parseTaskInput(task.input);
    const options = parseJobOptions(task.options);
    let target: Target;
    let substituted: ReturnType<typeof substituteHeaders>;
    try {
      // Checked again here: the config or the environment may have changed since the job was submitted.
      if (mentionsTemplate(input.url))
        throw new MonitorError(
          'INVALID_INPUT',
          'Secrets (${env:NAME}) are substituted in headers only, not in the URL.',
        );
      const url = new URL(input.url);
      this.checkUrl(url);
      substituted = substituteHeaders(mergeHeaders(options.headers, input.headers), this.settings.secretEnv, this.env);
      target = { url, method: input.method, headers: substituted.headers, body: input.body };
    } catch (error) {
      return { ok: false, error: toTaskError(error) };
    }
    const run: RequestRun = {
      task,
      started,
      timeoutMs: Math.round((input.timeoutSeconds ?? options.timeoutSeconds ?? this.settings.timeoutSeconds) * 1000),
      // Checked against the limits at submit; the user may have lowered them since (a resumed job): the current ones hold.
      perHost: Math.min(
        options.perHostConcurrency ?? this.settings.perHostConcurrency,
        this.settings.perHostConcurrency,
      ),
      maxRetries: Math.min(options.maxRetries ?? this.settings.maxRetries, this.settings.maxRetries),
      extract: extractOf(input, options),
      redactor: new Redactor(substituted.secrets),
      secretHeaders: substituted.secretHeaders,
      attempts: 0,
      retries: 0,
      redirects: [],
    };
    try {
      return run.redactor.value(await this.perform(run, target));
    } catch (error) {
      if (task.signal.aborted) throw task.signal.reason;
      const taskError = toTaskError(isMonitorError(error) ? error : describeFailure(error, input.method, input.url));
      const value: Record<string, unknown> = {
        ok: false,
        method: input.method,
        url: input.url,
        attempts: run.attempts,
      };
      if (run.redirects.length > 0) value.redirects = run.redirects;
      value.duration_ms = Date.now() - run.started;
      this.log.debug(
        `http ${task.jobId}#${task.index}: ${run.redactor.text(`${taskError.code} ${taskError.message}`)}`,
      );
      return run.redactor.value({ ok: false, error: taskError, value });
    }
  }

  /** A request by its method and URL. */
  label(input: unknown): string | undefined {
    const { method, url } = (input ?? {}) as { method?: unknown; url?: unknown };
    return typeof method === 'string' && typeof url === 'string' ? shortLabel(`${method} ${url}`) : undefined;
  }

  /** Called after the engine aborted its tasks: drop every socket rather than wait for a stuck one. */
  async close(): Promise<void> {
    const agent = this.agent;
    this.agent = undefined;
    await agent?.destroy();
  }

  private dispatcher(): Agent {
    // Built on first use so createServer stays free of side effects. The lookup refuses names that
    // resolve to non-public addresses, and the socket connects to the address it checked.
    this.agent ??= new Agent({
      connect: { lookup: checkedLookup(this.settings.allowPrivateAddresses), timeout: 10_000 },
      keepAliveTimeout: 4_000,
    });
    return this.agent;
  }

  /**
   * Follows redirects (each hop checked like the first URL) until a final response, then reads it.
   * A connection dropped while the body streams in is retried like one dropped before the answer.
   */
  private async perform(run: RequestRun, first: Target): Promise<TaskResult> {
    let target = first;
    for (;;) {
      const exchange = await this.sendWithRetries(run, target);
      const location = exchange.headers.location;
      if (!REDIRECT_STATUSES.has(exchange.status) || typeof location !== 'string') {
        try {
          return await this.finish(run, target, exchange);
        } catch (error) {
          if (!(await this.retryAfterFailure(run, target, error))) throw error;
          continue;
        }
      }
      await discard(exchange);
      target = this.redirectTarget(run, target, exchange.status, location);
      run.redirects.push(target.url.href);
    }
  }

  /** The next hop of a redirect, after the same checks as the first URL. */
  private redirectTarget(run: RequestRun, from: Target, status: number, location: string): Target {
    if (run.redirects.length >= MAX_REDIRECTS) {
      throw new HttpError('REDIRECT_NOT_ALLOWED', `${from.url.href} redirected more than ${MAX_REDIRECTS} times.`, {
        hint: 'Call the final URL directly.',
      });
    }
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
      this.checkUrl(next, 'redirect target');
    } catch (error) {
      if (!isMonitorError(error)) throw error;
      throw new HttpError(
        'REDIRECT_NOT_ALLOWED',
        `${from.url.href} redirected (${status}) to ${next.origin}, which was refused: ${error.message}`,
        { hint: error.hint, cause: error },
      );
    }
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
      headers = withoutHeaders(headers, new Set([...CREDENTIAL_HEADERS, ...run.secretHeaders]));
    return { url: next, method, headers, body };
  }

  /**
   * After a failed attempt: true (having waited the backoff) when it is worth another, i.e. a
   * connection failure of an idempotent request with retries left; false to give up.
   */
  private async retryAfterFailure(run: RequestRun, target: Target, error: unknown): Promise<boolean> {
    const { task, maxRetries } = run;
    if (task.signal.aborted) throw task.signal.reason;
    if (run.retries >= maxRetries || isMonitorError(error) || !isRetryableError(error, target.method)) return false;
    run.retries++;
    this.log.debug(
      `http ${task.jobId}#${task.index}: ${target.url.host} ${errorCode(error)}, retry ${run.retries}/${maxRetries}`,
    );
    await sleep(retryDelayMs(run.retries, this.policy), task.signal);
    return true;
  }

  /** Sends once, then again on 429/503 (honouring Retry-After) and on connection failures of idempotent requests. */
  private async sendWithRetries(run: RequestRun, target: Target): Promise<Exchange> {
    const { task, maxRetries } = run;
    for (;;) {
      run.attempts++;
      let exchange: Exchange;
      try {
        exchange = await this.send(run, target);
      } catch (error) {
        if (await this.retryAfterFailure(run, target, error)) continue;
        throw error;
      }
      if (!RETRY_STATUSES.has(exchange.status)) return exchange;
      const decision = decideRetry(
        run.retries,
        { ...this.policy, maxRetries },
        parseRetryAfter(headerText(exchange.headers['retry-after'])),
      );
      if (!decision.retry && decision.reason === 'retries-spent') return exchange;
      await discard(exchange);
      if (!decision.retry) {
        throw new HttpError(
          'HTTP_ERROR',
          `${target.method} ${target.url.href} answered ${exchange.status} and asked to retry after ${Math.ceil(decision.retryAfterMs / 1000)} s, longer than this server waits (${this.settings.maxRetryAfterSeconds} s).`,
          {
            hint: 'The API is rate limiting: wait that long, then run the failed requests again with resume_job (include failed). The user can raise http.maxRetryAfterSeconds.',
          },
        );
      }
      run.retries++;
      this.log.debug(
        `http ${task.jobId}#${task.index}: ${target.url.host} answered ${exchange.status}, retry ${run.retries}/${maxRetries} in ${decision.delayMs} ms`,
      );
      await sleep(decision.delayMs, task.signal);
    }
  }

  /** One request under the host's limit and the per-attempt timeout (which also covers reading the body). */
  private async send(run: RequestRun, target: Target): Promise<Exchange> {
    const release = await this.hostSlots.acquire(hostKey(target.url), run.perHost, run.task.signal);
    const timeout = AbortSignal.timeout(run.timeoutMs);
    const signal = AbortSignal.any([run.task.signal, timeout]);
    try {
      const response = await this.dispatcher().request({
        origin: target.url.origin,
        path: `${target.url.pathname}${target.url.search}`,
        method: target.method,
        // Whatever a stored request says (jobs from before this rule too): bodies come uncompressed.
        headers: {
          ...withoutHeaders(target.headers, new Set(['accept-encoding'])),
          'accept-encoding': ACCEPT_ENCODING,
        },
        body: target.body ?? null,
        signal,
        headersTimeout: run.timeoutMs,
        bodyTimeout: run.timeoutMs,
      });
      return { status: response.statusCode, headers: response.headers, body: response.body, timeout, release };
    } catch (error) {
      release();
      throw timedOut(error, timeout, run.timeoutMs, target);
    }
  }

  /** Reads the final response and builds the task's result. */
  private async finish(run: RequestRun, target: Target, exchange: Exchange): Promise<TaskResult> {
    const { task } = run;
    const contentType = headerText(exchange.headers['content-type']) ?? '';
    const looksJson = /[/+]json\b/i.test(contentType);
    const limits = {
      inlineBytes: this.settings.maxInlineBytes,
      keepBytes: looksJson
        ? Math.max(this.settings.maxInlineBytes, this.settings.maxJsonBytes)
        : this.settings.maxInlineBytes,
      maxBytes: this.settings.maxResponseBytes,
    };
    let read: ReadBody;
    try {
      read = await readBody(exchange.body, limits, path.join(task.outputDir, `${task.index}.body`), run.redactor);
    } catch (error) {
      throw timedOut(error, exchange.timeout, run.timeoutMs, target);
    } finally {
      exchange.release();
    }

    const ok = exchange.status >= 200 && exchange.status < 300;
    const value: Record<string, unknown> = {
      status: exchange.status,
      ok,
      method: target.method,
      url: target.url.href,
      headers: keptHeaders(exchange.headers),
      bytes: read.bytes,
    };
    if (read.truncated) value.truncated = true;
    if (run.redirects.length > 0) value.redirects = run.redirects;
    value.attempts = run.attempts;
    const files: Record<string, string> = {};
    if (read.file) files.body = read.file;

    const content = await this.describeContent(task, read, contentType, looksJson, run.extract);
    Object.assign(value, content.fields);
    if (content.extractedFile) files.extracted = content.extractedFile;
    value.duration_ms = Date.now() - run.started;

    const result: TaskResult = { ok, value };
    if (Object.keys(files).length > 0) result.files = files;
    if (!ok) result.error = httpError(target, exchange.status, run.attempts);
    return result;
  }

  /** `json` (parsed, extracted) when the body is JSON and fits; otherwise a `text` preview, or `binary`. */
  private async describeContent(
    task: TaskContext,
    read: ReadBody,
    contentType: string,
    looksJson: boolean,
    extract: ExtractSpec | undefined,
  ): Promise<{ fields: Record<string, unknown>; extractedFile?: string }> {
    const inline = this.settings.maxInlineBytes;
    const fields: Record<string, unknown> = {};
    if (read.bytes === 0) return { fields };
    const preview = read.kept.subarray(0, inline);
    const cut = read.kept.length > inline || !read.complete;

    if (
      read.complete &&
      (looksJson || (read.kept.length <= inline && /^\s*[[{]/.test(preview.toString('utf8', 0, 64))))
    ) {
      let parsed: unknown;
      let parsedOk = false;
      try {
        parsed = JSON.parse(read.kept.toString('utf8'));
        parsedOk = true;
      } catch {
        if (looksJson) fields.json_error = 'The body is not valid JSON; see text.';
      }
      if (parsedOk) {
        let json = parsed;
        if (extract !== undefined) {
          const extracted = applyExtract(parsed, extract);
          json = extracted.value;
          if (extracted.missing !== undefined) fields.extract_missing = `Nothing at ${extracted.missing} in the body.`;
        }
        const serialised = JSON.stringify(json) ?? 'null';
        if (Buffer.byteLength(serialised) <= inline) {
          fields.json = json;
          return { fields };
        }
        // Too big to show: a preview here, all of it in a file.
        fields.text = cutText(serialised, inline);
        fields.cut = true;
        if (extract === undefined && read.file) return { fields };
        const extractedFile = path.join(task.outputDir, `${task.index}.extracted.json`);
        await writeFile(extractedFile, serialised, { mode: 0o600 });
        return { fields, extractedFile };
      }
    } else if (looksJson && !read.complete) {
      fields.json_error = read.truncated
        ? 'The body was cut at the response size cap, so it was not parsed as JSON.'
        : `The body is larger than ${this.settings.maxJsonBytes} bytes (http.maxJsonBytes), so it was not parsed; it is in files.body.`;
    }

    if (isBinary(preview, contentType)) {
      fields.binary = true;
      return { fields };
    }
    fields.text = new TextDecoder('utf-8').decode(preview, { stream: cut });
    if (cut) fields.cut = true;
    return { fields };
  }
}

function withoutHeaders(headers: Readonly<Record<string, string>>, names: ReadonlySet<string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.has(name.toLowerCase())));
}

async function discard(exchange: Exchange): Promise<void> {
  try {
    await exchange.body.dump({ limit: 64 * 1024 });
  } catch {
    // A body we do not want may fail to drain; the connection is simply not reused.
  } finally {
    exchange.release();
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function keptHeaders(headers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of KEPT_RESPONSE_HEADERS) {
    const value = headerText(headers[name]);
    if (value !== undefined) out[name] = value.length > 500 ? `${value.slice(0, 500)}…` : value;
  }
  return out;
}

function cutText(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= maxBytes
    ? text
    : new TextDecoder('utf-8').decode(bytes.subarray(0, maxBytes), { stream: true });
}

const BINARY_TYPES = /^(image|audio|video|font)\/|^application\/(octet-stream|pdf|zip|gzip|x-tar|x-7z|wasm|vnd\.)/i;

function isBinary(preview: Buffer, contentType: string): boolean {
  if (BINARY_TYPES.test(contentType) && !/json|xml/i.test(contentType)) return true;
  return preview.includes(0);
}

function errorCode(error: unknown): string {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : 'error';
}

function timedOut(error: unknown, timeout: AbortSignal, timeoutMs: number, target: Target): unknown {
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
function describeFailure(error: unknown, method: string, url: string): HttpError {
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

function httpError(target: Target, status: number, attempts: number): TaskError {
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
    hint: 'The value holds the response body preview; the full body is in files.body when large.',
  };
}
