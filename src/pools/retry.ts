/**
 * One retry policy for the kinds that call servers (LLM endpoints, HTTP APIs): exponential backoff
 * with jitter, the server's Retry-After honoured up to a limit (a longer one fails at once rather
 * than hold a slot), and an abortable sleep.
 */
export interface RetryPolicy {
  maxRetries: number;
  /** The first backoff's ceiling; it doubles with each retry up to `capMs`. */
  baseMs: number;
  capMs: number;
  /** The longest Retry-After waited as asked. */
  maxRetryAfterMs: number;
}

/** Exponential backoff with jitter: retry 1 waits between base/2 and base, then 2×, 4×…, capped. */
export function backoffMs(
  retry: number,
  policy: Pick<RetryPolicy, 'baseMs' | 'capMs'>,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** How long to wait before retry number `retry`: the server's Retry-After (at most the policy's), else backoff. */
export function retryDelayMs(retry: number, policy: RetryPolicy, retryAfterMs?: number, random?: () => number): number {
  return retryAfterMs === undefined ? backoffMs(retry, policy, random) : Math.min(retryAfterMs, policy.maxRetryAfterMs);
}

/** Whether a retryable failure goes again, and when. */
export type RetryDecision =
  | { retry: true; delayMs: number }
  | { retry: false; reason: 'retries-spent' }
  /** The server asked for a longer wait than the policy allows: fail now rather than hold a slot for a retry it would refuse. */
  | { retry: false; reason: 'retry-after-too-long'; retryAfterMs: number };

/** After `retries` retries so far: retry after the server's Retry-After (or backoff), or give up and why. */
export function decideRetry(
  retries: number,
  policy: RetryPolicy,
  retryAfterMs?: number,
  random?: () => number,
): RetryDecision {
  if (retries >= policy.maxRetries) return { retry: false, reason: 'retries-spent' };
  if (retryAfterMs !== undefined && retryAfterMs > policy.maxRetryAfterMs)
    return { retry: false, reason: 'retry-after-too-long', retryAfterMs };
  return { retry: true, delayMs: retryDelayMs(retries + 1, policy, retryAfterMs, random) };
}

/**
 * `Retry-After` in milliseconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
 * undefined when absent or unreadable; a past date is 0.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  // An HTTP date always names its day or month; Date.parse alone would take "-3" for a year.
  const date = /[A-Za-z]/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
