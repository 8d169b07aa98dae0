import type { Pool, TaskContext, TaskResult } from '../../engine/types.js';
import { isMonitorError, MonitorError, toTaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { shortLabel } from '../kind.js';
import type { RetryPolicy } from '../retry.js';
import { checkLiteralHost } from './addresses.js';
import { HttpError } from './errors.js';
import { describeFailure } from './failures.js';
import { allowEntryFor, allowHostHint, isHostAllowed, parseHostPatterns, type HostPattern } from './hosts.js';
import {
  extractOf,
  type HttpJobOptions,
  type HttpTaskInput,
  mergeHeaders,
  parseJobOptions,
  parseTaskInput,
  type Target,
} from './request.js';
import { responseResult } from './response.js';
import {
  checkSecretNames,
  mentionsTemplate,
  Redactor,
  referencedEnvNames,
  substituteHeaders,
  type Env,
} from './secrets.js';
import type { HttpSettings } from './settings.js';
import { type RequestRun, Transfer } from './transfer.js';
import type { LiveCard } from '../kind.js';
import { WorkGauge } from '../rates.js';
import { HTTP_KIND } from './facts.js';

/** Backoff between retries of one request; a Retry-After past http.maxRetryAfterSeconds fails it instead. */
export const HTTP_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

export interface HttpPoolOptions {
  settings: HttpSettings;
  /** Where `${env:NAME}` values come from; read at send time, never stored. */
  env: Env;
  log: Logger;
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
  private readonly transfer: Transfer;
  /** Requests in hand and requests finished, for the live card. */
  private readonly gauge = new WorkGauge('http');

  constructor(options: HttpPoolOptions) {
    this.settings = options.settings;
    this.env = options.env;
    this.log = options.log;
    this.concurrency = options.settings.maxConcurrency;
    this.patterns = parseHostPatterns(options.settings.allowHosts);
    const policy: RetryPolicy = {
      maxRetries: options.settings.maxRetries,
      ...HTTP_BACKOFF,
      maxRetryAfterMs: options.settings.maxRetryAfterSeconds * 1000,
    };
    this.transfer = new Transfer({
      settings: options.settings,
      policy,
      log: options.log,
      checkUrl: (url, what) => this.checkUrl(url, what),
    });
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
    return this.gauge.count(1, () => this.request(task));
  }

  /** The pool as a live card: requests in hand out of its concurrency, requests finished per second. */
  liveCards(): LiveCard[] {
    const hosts = this.patterns.length;
    return [this.gauge.card(this.concurrency, `${hosts} allowed host pattern${hosts === 1 ? '' : 's'}`, 'requests/s')];
  }

  private async request(task: TaskContext): Promise<TaskResult> {
    const started = Date.now();
    const input = parseTaskInput(task.input);
    const options = parseJobOptions(task.options);
    let prepared: { target: Target; run: RequestRun };
    try {
      prepared = this.prepare(task, input, options, started);
    } catch (error) {
      return { ok: false, error: toTaskError(error) };
    }
    const { target, run } = prepared;
    try {
      const result = await this.transfer.perform(run, target, (final, exchange) =>
        responseResult(run, final, exchange, this.settings),
      );
      return run.redactor.value(result);
    } catch (error) {
      if (task.signal.aborted) throw task.signal.reason;
      return this.failed(run, input, error);
    }
  }

  /** A request by its method and URL. */
  label(input: unknown): string | undefined {
    const { method, url } = (input ?? {}) as { method?: unknown; url?: unknown };
    return typeof method === 'string' && typeof url === 'string' ? shortLabel(`${method} ${url}`) : undefined;
  }

  /** Called after the engine aborted its tasks: drop every socket rather than wait for a stuck one. */
  async close(): Promise<void> {
    await this.transfer.close();
  }

  /** The stored request checked again and made ready to send: its secrets substituted, its limits decided. */
  private prepare(
    task: TaskContext,
    input: HttpTaskInput,
    options: HttpJobOptions,
    started: number,
  ): { target: Target; run: RequestRun } {
    // Checked again here: the config or the environment may have changed since the job was submitted.
    if (mentionsTemplate(input.url))
      throw new MonitorError('INVALID_INPUT', 'Secrets (${env:NAME}) are substituted in headers only, not in the URL.');
    const url = new URL(input.url);
    this.checkUrl(url);
    const substituted = substituteHeaders(
      mergeHeaders(options.headers, input.headers),
      this.settings.secretEnv,
      this.env,
    );
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
    return { target: { url, method: input.method, headers: substituted.headers, body: input.body }, run };
  }

  /** A request that got no final answer: the error, and what was tried, with its secrets removed. */
  private failed(run: RequestRun, input: HttpTaskInput, error: unknown): TaskResult {
    const taskError = toTaskError(isMonitorError(error) ? error : describeFailure(error, input.method, input.url));
    const value: Record<string, unknown> = {
      ok: false,
      method: input.method,
      url: input.url,
      attempts: run.attempts,
    };
    if (run.redirects.length > 0) value.redirects = run.redirects;
    value.duration_ms = Date.now() - run.started;
    const { task } = run;
    this.log.debug(`http ${task.jobId}#${task.index}: ${run.redactor.text(`${taskError.code} ${taskError.message}`)}`);
    return run.redactor.value({ ok: false, error: taskError, value });
  }
}
