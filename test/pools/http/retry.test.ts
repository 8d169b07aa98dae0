import { describe, expect, it } from 'vitest';
import { isRetryableError } from '../../../src/pools/http/retry.js';

describe('http retry rules', () => {
  it('retries dropped connections only for idempotent methods', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    expect(isRetryableError(reset, 'GET')).toBe(true);
    expect(isRetryableError(reset, 'POST')).toBe(false);
    expect(isRetryableError(new Error('other'), 'GET')).toBe(false);
  });
});
