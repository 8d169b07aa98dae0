import { describe, expect, it } from 'vitest';
import {
  allowEntryFor,
  allowHostHint,
  isHostAllowed,
  parseHostPattern,
  parseHostPatterns,
} from '../../../src/pools/http/hosts.js';

const allowed = (url: string, entries: string[]): boolean => isHostAllowed(new URL(url), parseHostPatterns(entries));

describe('allowHosts patterns', () => {
  it('matches a plain host on the default ports only', () => {
    expect(allowed('https://api.github.com/repos', ['api.github.com'])).toBe(true);
    expect(allowed('http://api.github.com/', ['api.github.com'])).toBe(true);
    expect(allowed('https://API.GitHub.com./x', ['api.github.com'])).toBe(true);
    expect(allowed('https://api.github.com:8443/', ['api.github.com'])).toBe(false);
    expect(allowed('https://evil-api.github.com/', ['api.github.com'])).toBe(false);
    expect(allowed('https://api.github.com.evil.com/', ['api.github.com'])).toBe(false);
  });

  it('matches host:port exactly, including an explicit default port', () => {
    expect(allowed('http://127.0.0.1:8080/', ['127.0.0.1:8080'])).toBe(true);
    expect(allowed('http://127.0.0.1:8081/', ['127.0.0.1:8080'])).toBe(false);
    expect(allowed('http://127.0.0.1/', ['127.0.0.1:8080'])).toBe(false);
    expect(allowed('http://example.com/', ['example.com:80'])).toBe(true);
    expect(allowed('https://example.com/', ['example.com:80'])).toBe(false);
    expect(allowed('http://[::1]:9000/', ['[::1]:9000'])).toBe(true);
  });

  it('a leading *. allows subdomains at any depth, not the domain itself', () => {
    expect(allowed('https://a.example.com/', ['*.example.com'])).toBe(true);
    expect(allowed('https://a.b.example.com/', ['*.example.com'])).toBe(true);
    expect(allowed('https://example.com/', ['*.example.com'])).toBe(false);
    expect(allowed('https://badexample.com/', ['*.example.com'])).toBe(false);
    expect(allowed('https://a.example.com:444/', ['*.example.com'])).toBe(false);
    expect(allowed('https://a.example.com:444/', ['*.example.com:444'])).toBe(true);
  });

  it('normalises entries the way URLs are normalised', () => {
    expect(parseHostPattern('Example.COM').host).toBe('example.com');
    expect(parseHostPattern('127.1:80').host).toBe('127.0.0.1');
    expect(parseHostPattern('bücher.de').host).toBe('xn--bcher-kva.de');
    expect(allowed('https://xn--bcher-kva.de/', ['bücher.de'])).toBe(true);
  });

  it('rejects entries that are not [*.]host[:port]', () => {
    for (const bad of [
      'https://api.github.com',
      'api.github.com/path',
      '*',
      '*.',
      'a.*.com',
      'user@host',
      'host:99999',
      '*.10.0.0.1',
      'a b',
    ]) {
      expect(() => parseHostPattern(bad), bad).toThrow(/allowHosts entry/);
    }
  });

  it('names the entry to add and every way to add it', () => {
    expect(allowEntryFor(new URL('https://api.github.com/x'))).toBe('api.github.com');
    expect(allowEntryFor(new URL('http://127.0.0.1:8080/x'))).toBe('127.0.0.1:8080');
    const hint = allowHostHint(['api.github.com']);
    expect(hint).toContain('--http-allow-host api.github.com');
    expect(hint).toContain('MONITOR_HTTP_ALLOW_HOSTS=api.github.com');
    expect(hint).toContain('"http": {"allowHosts": ["api.github.com"]}');
  });
});
