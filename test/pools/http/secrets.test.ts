import { describe, expect, it } from 'vitest';
import { Redactor, referencedEnvNames, substituteHeaders } from '../../../src/pools/http/secrets.js';

describe('secrets', () => {
  it('finds ${env:NAME} references and substitutes allowed, set vars', () => {
    expect(referencedEnvNames('Bearer ${env:A_TOKEN} and ${env:B} and ${env:A_TOKEN} and ${other}')).toEqual([
      'A_TOKEN',
      'B',
    ]);
    const out = substituteHeaders({ Authorization: 'Bearer ${env:TOKEN}', Accept: 'application/json' }, ['TOKEN'], {
      TOKEN: 'abc123secret',
    });
    expect(out.headers).toEqual({ Authorization: 'Bearer abc123secret', Accept: 'application/json' });
    expect(out.secrets).toEqual([{ name: 'TOKEN', value: 'abc123secret' }]);
    expect([...out.secretHeaders]).toEqual(['authorization']);
  });

  it('refuses vars that are not allowed, unset or empty, naming them', () => {
    expect(() => substituteHeaders({ a: '${env:NOPE}' }, ['TOKEN'], { NOPE: 'v' })).toThrow(/NOPE is not on the list/);
    expect(() => substituteHeaders({ a: '${env:TOKEN}' }, ['TOKEN'], {})).toThrow(/TOKEN is not set/);
    expect(() => substituteHeaders({ a: '${env:TOKEN}' }, ['TOKEN'], { TOKEN: '' })).toThrow(/TOKEN is not set/);
  });

  it('redacts strings and JSON values, longest secret first', () => {
    const r = new Redactor([
      { name: 'SHORT', value: 'abc' },
      { name: 'LONG', value: 'xxabcxx' },
    ]);
    expect(r.text('a xxabcxx b abc')).toBe('a [redacted:LONG] b [redacted:SHORT]');
    expect(r.value({ k: ['abc', 1, null, { abc: 'xxabcxx' }] })).toEqual({
      k: ['[redacted:SHORT]', 1, null, { '[redacted:SHORT]': '[redacted:LONG]' }],
    });
  });

  it('keeps a __proto__ key of a parsed body as a key while redacting', () => {
    const r = new Redactor([{ name: 'T', value: 'abc' }]);
    const parsed: unknown = JSON.parse('{"__proto__": {"token": "abc"}, "n": 1}');
    const out = r.value(parsed);
    expect(JSON.stringify(out)).toBe('{"__proto__":{"token":"[redacted:T]"},"n":1}');
    expect(Object.getPrototypeOf(out)).toBeNull();
  });

  it('redacts a stream whatever the chunk boundaries, without holding more than the longest secret', () => {
    const secret = 'S3CR3T-value-42';
    const r = new Redactor([{ name: 'T', value: secret }]);
    const input = `head ${secret}${secret} mid ${secret.slice(0, 5)} tail ${secret}`;
    const expected = r.text(input);
    const bytes = Buffer.from(input);
    for (let size = 1; size <= bytes.length; size++) {
      const filter = r.stream();
      const parts: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += size) {
        const out = filter.push(bytes.subarray(at, at + size));
        parts.push(out);
      }
      parts.push(filter.end());
      expect(Buffer.concat(parts).toString(), `chunk size ${size}`).toBe(expected);
      expect(parts.every((p) => !p.toString().includes(secret))).toBe(true);
    }
  });

  it('also redacts the JSON-escaped and URL-encoded forms of a secret', () => {
    const r = new Redactor([{ name: 'T', value: 'ab/c+d"e' }]);
    expect(r.text(JSON.stringify({ v: 'ab/c+d"e' }))).toBe('{"v":"[redacted:T]"}');
    expect(r.text('{"v":"ab\\/c+d\\"e"}')).toBe('{"v":"[redacted:T]"}');
    expect(r.text(`https://x/?t=${encodeURIComponent('ab/c+d"e')}`)).toBe('https://x/?t=[redacted:T]');
  });

  it('passes data through untouched when there is no secret', () => {
    const r = new Redactor([]);
    const chunk = Buffer.from('plain');
    const filter = r.stream();
    expect(filter.push(chunk)).toBe(chunk);
    expect(filter.end()).toHaveLength(0);
  });
});
