import type { Agent, Dispatcher } from 'undici';
import type { TaskContext } from '../../engine/types.js';
import { isMonitorError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { decideRetry, parseRetryAfter, type RetryPolicy, retryDelayMs, sleep } from '../retry.js';
import { checkedLookup } from './addresses.js';
import { HttpError } from './errors.js';
import type { ExtractSpec } from './extract.js';
import { errorCode, timedOut } from './failures.js';
import { hostKey } from './hosts.js';
import { redirectTarget, REDIRECT_STATUSES } from './redirect.js';
import { ACCEPT_ENCODING, headerText, type Target, withoutHeaders } from './request.js';
import { isRetryableError, RETRY_STATUSES } from './retry.js';
import type { Redactor } from './secrets.js';
import { KeyedSemaphore } from './semaphore.js';
import type { HttpSettings } from './settings.js';

/** One response on its way: the host slot is held until the body is read or discarded. */
export interface Exchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** The attempt's own deadline, to tell a timeout from a cancel. */
  timeout: AbortSignal;
  release(): void;
}

/** One task's request as it runs: its limits, its secrets' redactor, and what happened so far. */
export interface RequestRun {
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

export interface TransferOptions {
  settings: HttpSettings;
  policy: RetryPolicy;
  log: Logger;
  /** The pool's check of a URL, which every redirect hop passes like the first. */
  checkUrl(url: URL, what: string): void;
}

/**
 * Carries requests to their final answer: one connection pool for all, a limit per host, the
 * per-attempt timeout, retries on 429/503 (honouring Retry-After) and on dropped connections of
 * idempotent requests, and redirects, each hop checked like the first URL.
 */
export class Transfer {
  private readonly hostSlots = new KeyedSemaphore();
  private agent: Agent | undefined;

  constructor(private readonly options: TransferOptions) {}

  /**
   * Follows redirects until a final response, then hands it to `read`. A connection dropped while
   * `read` streams the body in is retried like one dropped before the answer.
   */
  async perform<T>(
    run: RequestRun,
    first: Target,
    read: (target: Target, exchange: Exchange) => Promise<T>,
  ): Promise<T> {
    let target = first;
    for (;;) {
      const exchange = await this.sendWithRetries(run, target);
      const location = exchange.headers.location;
      if (!REDIRECT_STATUSES.has(exchange.status) || typeof location !== 'string') {
        try {
          return await read(target, exchange);
        } catch (error) {
          if (!(await this.retryAfterFailure(run, target, error))) throw error;
          continue;
        }
      }
      await discard(exchange);
      target = redirectTarget(target, exchange.status, location, {
        hops: run.redirects.length,
        secretHeaders: run.secretHeaders,
        checkUrl: this.options.checkUrl,
      });
      run.redirects.push(target.url.href);
    }
  }

  /** Drops every socket rather than wait for a stuck one (the engine has aborted its tasks). */
  async close(): Promise<void> {
    const agent = this.agent;
    this.agent = undefined;
    await agent?.destroy();
  }

  private async dispatcher(): Promise<Agent> {
    // Built on first use so createServer stays free of side effects, and undici loaded then (it
    // costs the server's start ~80 ms). The lookup refuses names that resolve to non-public
    // addresses, and the socket connects to the address it checked.
    if (this.agent) return this.agent;
    const { Agent: UndiciAgent } = await import('undici');
    this.agent ??= new UndiciAgent({
      connect: { lookup: checkedLookup(this.options.settings.allowPrivateAddresses), timeout: 10_000 },
      keepAliveTimeout: 4_000,
    });
    return this.agent;
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
    this.options.log.debug(
      `http ${task.jobId}#${task.index}: ${target.url.host} ${errorCode(error)}, retry ${run.retries}/${maxRetries}`,
    );
    await sleep(retryDelayMs(run.retries, this.options.policy), task.signal);
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
        { ...this.options.policy, maxRetries },
        parseRetryAfter(headerText(exchange.headers['retry-after'])),
      );
      if (!decision.retry && decision.reason === 'retries-spent') return exchange;
      await discard(exchange);
      if (!decision.retry) {
        throw new HttpError(
          'HTTP_ERROR',
          `${target.method} ${target.url.href} answered ${exchange.status} and asked to retry after ${Math.ceil(decision.retryAfterMs / 1000)} s, longer than this server waits (${this.options.settings.maxRetryAfterSeconds} s).`,
          {
            hint: 'The API is rate limiting: wait that long, then run the failed requests again with resume_job (include failed). The user can raise http.maxRetryAfterSeconds.',
          },
        );
      }
      run.retries++;
      this.options.log.debug(
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
      const response = await (
        await this.dispatcher()
      ).request({
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
}

/** Drains a body nobody wants (a redirect's, a 429's) and frees its host slot. */
async function discard(exchange: Exchange): Promise<void> {
  try {
    await exchange.body.dump({ limit: 64 * 1024 });
  } catch {
    // A body we do not want may fail to drain; the connection is simply not reused.
  } finally {
    exchange.release();
  }
}
