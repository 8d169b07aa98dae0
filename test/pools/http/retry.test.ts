import { describe, expect, it } from 'vitest';
import { backoffMs, isRetryableError, parseRetryAfter, sleep } from '../../../src/pools/http/retry.js';

describe('retry rules', () => {
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
    expect(backoffMs(1, 500, 30_000, () => 0)).toBe(250);
    expect(backoffMs(1, 500, 30_000, () => 1)).toBe(500);
    expect(backoffMs(3, 500, 30_000, () => 1)).toBe(2000);
    expect(backoffMs(20, 500, 30_000, () => 1)).toBe(30_000);
  });

  it('retries dropped connections only for idempotent methods', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    expect(isRetryableError(reset, 'GET')).toBe(true);
    expect(isRetryableError(reset, 'POST')).toBe(false);
    expect(isRetryableError(new Error('other'), 'GET')).toBe(false);
  });

  it('a sleep ends at once when its signal aborts', async () => {
    const controller = new AbortController();
    const t0 = Date.now();
    const pending = sleep(10_000, controller.signal);
    controller.abort(new Error('stop'));
    await expect(pending).rejects.toThrow('stop');
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
