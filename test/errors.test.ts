import { describe, expect, it } from 'vitest';
import { CORE_ERROR_CODES, errorText, isMonitorError, MonitorError, toTaskError, withContext } from '../src/errors.js';
import { HttpError } from '../src/pools/http/errors.js';
import { LlmError } from '../src/pools/llm/errors.js';
import { ScriptError } from '../src/pools/script/errors.js';
import { KINDS } from '../src/registry.js';

describe('errors', () => {
  it('carry a stable code, a hint for the next step and the error they were made from', () => {
    const cause = new Error('ECONNREFUSED');
    const error = new LlmError('ENDPOINT_UNREACHABLE', 'Endpoint lmstudio refused the connection.', {
      hint: 'Start the server.',
      cause,
      retryable: true,
    });
    expect(isMonitorError(error)).toBe(true);
    expect(error).toMatchObject({
      name: 'LlmError',
      code: 'ENDPOINT_UNREACHABLE',
      hint: 'Start the server.',
      retryable: true,
      cause,
    });
    expect(errorText(error)).toBe(
      'ENDPOINT_UNREACHABLE: Endpoint lmstudio refused the connection.\nNext: Start the server.',
    );
    expect(toTaskError(new TypeError('boom'))).toEqual({ code: 'INTERNAL', message: 'boom' });
  });

  it('keep code, hint, retryability and the original as cause when a place is put in front', () => {
    const original = new HttpError('SECRET_NOT_SET', 'GITHUB_TOKEN is not set.', { hint: 'Set it.' });
    const wrapped = withContext('requests[3]', original);
    expect(wrapped).toMatchObject({
      code: 'SECRET_NOT_SET',
      message: 'requests[3]: GITHUB_TOKEN is not set.',
      hint: 'Set it.',
      cause: original,
    });
    const plain = new Error('not ours');
    expect(withContext('x', plain)).toBe(plain);
  });

  it('show what the caller sent readably: control characters escaped, a very long word shortened to its ends', () => {
    const id = `job_${'x'.repeat(5000)}\u0000end`;
    const text = errorText(new MonitorError('JOB_NOT_FOUND', `No job "${id}" here.`, { hint: 'Call list_jobs.' }));
    expect(text).not.toContain('\u0000');
    expect(text.length).toBeLessThan(300);
    expect(text).toMatch(
      /^JOB_NOT_FOUND: No job "job_x+…\(5015 characters\)…x+\\u0000end" here\.\nNext: Call list_jobs\.$/,
    );
  });

  it('a shutting-down server says so, not INTERNAL', () => {
    expect(CORE_ERROR_CODES).toContain('SHUTTING_DOWN');
    expect(new MonitorError('SHUTTING_DOWN', 'The server is shutting down.').code).toBe('SHUTTING_DOWN');
  });

  it('each kind declares its own codes, apart from the core ones, with an error class that takes them', () => {
    for (const { kind } of KINDS) {
      expect(kind.errorCodes.length, kind.name).toBeGreaterThan(0);
      for (const code of kind.errorCodes) {
        expect(code, kind.name).toMatch(/^[A-Z][A-Z0-9_]+$/);
        expect(CORE_ERROR_CODES as readonly string[], `${kind.name} redeclares ${code}`).not.toContain(code);
      }
    }
    expect(new ScriptError('NON_ZERO_EXIT', 'exited with code 3').name).toBe('ScriptError');
    // A kind's class takes the core codes too.
    expect(new ScriptError('INVALID_INPUT', 'bad').code).toBe('INVALID_INPUT');
  });
});
