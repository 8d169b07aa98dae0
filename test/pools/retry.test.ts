import { describe, expect, it } from 'vitest';
import { HTTP_BACKOFF } from '../../src/pools/http/pool.js';
import { backoffMs, decideRetry, parseRetryAfter, retryDelayMs, sleep } from '../../src/pools/retry.js';

describe('the retry policy shared by the LLM and HTTP kinds', () => {
  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('5', now)).toBe(5000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-3', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffMs(1, HTTP_BACKOFF, () => 0)).toBe(250);
    expect(backoffMs(1, HTTP_BACKOFF, () => 1)).toBe(500);
    expect(backoffMs(3, HTTP_BACKOFF, () => 1)).toBe(2000);
    expect(backoffMs(20, HTTP_BACKOFF, () => 1)).toBe(30_000);
  });

  it('waits what the Retry-After of the server asks, up to the longest of the policy', () => {
    const policy = { maxRetries: 3, ...HTTP_BACKOFF, maxRetryAfterMs: 60_000 };
    expect(retryDelayMs(1, policy, 5000)).toBe(5000);
    expect(retryDelayMs(1, policy, 90_000)).toBe(60_000);
    expect(retryDelayMs(2, policy, undefined, () => 1)).toBe(1000);
  });

  it('decides per failure: wait and go again, give up when retries are spent, or at once when Retry-After is beyond the limit', () => {
    const policy = { maxRetries: 2, ...HTTP_BACKOFF, maxRetryAfterMs: 60_000 };
    expect(decideRetry(0, policy, undefined, () => 1)).toEqual({ retry: true, delayMs: 500 });
    expect(decideRetry(1, policy, 5000)).toEqual({ retry: true, delayMs: 5000 });
    expect(decideRetry(0, policy, 60_000)).toEqual({ retry: true, delayMs: 60_000 });
    expect(decideRetry(0, policy, 100_000_000)).toEqual({
      retry: false,
      reason: 'retry-after-too-long',
      retryAfterMs: 100_000_000,
    });
    expect(decideRetry(2, policy, 5000)).toEqual({ retry: false, reason: 'retries-spent' });
    expect(decideRetry(2, policy, 100_000_000)).toEqual({ retry: false, reason: 'retries-spent' });
  });

  it('a sleep ends at once when its signal aborts', async () => {
    const controller = new AbortController();
    // Not aborted, it would resolve after 10 s instead of rejecting (how fast: npm run bench stops).
    const pending = sleep(10_000, controller.signal);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
  });
});
