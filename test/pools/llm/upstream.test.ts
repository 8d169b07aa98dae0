import { describe, expect, it } from 'vitest';
import { redactSecret, transportError, type UpstreamContext } from '../../../src/pools/llm/upstream.js';

describe('transport failures', () => {
  const ctx: UpstreamContext = {
    endpoint: { name: 'e', url: 'http://127.0.0.1:1234', flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN' },
    tokenSent: false,
  };
  const withCode = (code: string): Error => Object.assign(new Error(`boom ${code}`), { code });

  it.each([
    ['ECONNREFUSED', 'request', 'ENDPOINT_UNREACHABLE', true, /server not running/],
    ['ENOTFOUND', 'request', 'ENDPOINT_UNREACHABLE', true, /ENOTFOUND/],
    ['EHOSTUNREACH', 'request', 'ENDPOINT_UNREACHABLE', true, /EHOSTUNREACH/],
    ['UND_ERR_CONNECT_TIMEOUT', 'request', 'ENDPOINT_UNREACHABLE', true, /CONNECT_TIMEOUT/],
    ['ECONNRESET', 'request', 'UPSTREAM_ERROR', true, /closed before the answer/],
    ['UND_ERR_SOCKET', 'request', 'UPSTREAM_ERROR', true, /closed before the answer/],
    ['ECONNRESET', 'answer', 'UPSTREAM_ERROR', true, /reset mid-answer/],
    ['UND_ERR_HEADERS_TIMEOUT', 'request', 'TIMEOUT', false, /no answer headers/],
    ['UND_ERR_BODY_TIMEOUT', 'answer', 'TIMEOUT', false, /stalled/],
    ['ERR_SOMETHING_ELSE', 'request', 'UPSTREAM_ERROR', false, /boom/],
  ] as const)('%s while %s → %s', (code, phase, expected, retryable, message) => {
    // undici wraps the socket's error as `cause`: the code is found either way.
    const error = transportError(new TypeError('fetch failed', { cause: withCode(code) }), ctx, phase);
    expect(error.code).toBe(expected);
    expect(error.retryable).toBe(retryable);
    expect(error.message).toMatch(expected === 'UPSTREAM_ERROR' && !retryable ? /fetch failed/ : message);
    if (expected === 'ENDPOINT_UNREACHABLE')
      expect(error.hint).toMatch(/Developer tab[\s\S]*Status to Running[\s\S]*lms server start/);
  });
});

describe('redactSecret', () => {
  it.each([
    ['the whole token', 'bad token abcdef123456', 'abcdef123456', 'bad token [redacted]'],
    [
      'the 10 characters LM Studio echoes',
      'Malformed LM Studio API token provided: abcdef1234... Ensure',
      'abcdef123456xyz',
      'Malformed LM Studio API token provided: [redacted]... Ensure',
    ],
    ['a 6-character prefix', 'prefix abcdef then', 'abcdef123456', 'prefix [redacted] then'],
    [
      'any LM Studio token, known or not',
      'token sk-lm-Zx81:Qq2 was refused',
      undefined,
      'token sk-lm-[redacted] was refused',
    ],
    ['nothing when the text has none of it', 'No models loaded.', 'abcdef123456', 'No models loaded.'],
    ['not 5 characters of the prefix', 'abcde is fine', 'abcdef123456', 'abcde is fine'],
  ])('removes %s', (_what, text, secret, expected) => {
    expect(redactSecret(text, secret)).toBe(expected);
  });
});
