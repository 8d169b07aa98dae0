import { stat } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { type Handler, sendJson } from '../../fixtures/http-server.js';
import { httpHarness, SECRET, valueOf } from './harness.js';

const http = httpHarness();
const { server, setup } = http;

describe('HttpPool transfer', () => {
  it('honours Retry-After on 429, backs off on 503, and gives up on a Retry-After beyond the limit', async () => {
    const seen = new Map<string, number>();
    const s = await server((req, res) => {
      const n = (seen.get(req.url ?? '') ?? 0) + 1;
      seen.set(req.url ?? '', n);
      if (req.url === '/limited' && n === 1) return sendJson(res, 429, { error: 'slow down' }, { 'retry-after': '1' });
      if (req.url === '/busy' && n <= 2) return sendJson(res, 503, { error: 'busy' });
      if (req.url === '/forever') return sendJson(res, 429, { error: 'come back later' }, { 'retry-after': '3600' });
      if (req.url === '/always') return sendJson(res, 429, { error: 'no' }, { 'retry-after': '0' });
      return sendJson(res, 200, { n });
    });
    const { run } = setup({
      allowHosts: [s.hostEntry],
      allowPrivateAddresses: true,
      maxRetries: 3,
      maxRetryAfterSeconds: 60,
    });

    const t0 = Date.now();
    const limited = await run({ method: 'GET', url: `${s.origin}/limited` });
    const waited = Date.now() - t0;
    expect(limited.ok).toBe(true);
    expect(valueOf(limited).attempts).toBe(2);
    expect(waited).toBeGreaterThanOrEqual(950);

    const busy = await run({ method: 'GET', url: `${s.origin}/busy` });
    expect(busy.ok).toBe(true);
    expect(valueOf(busy).attempts).toBe(3);

    // Asked to wait an hour: fails at once instead (waiting would outlast the test's timeout).
    const forever = await run({ method: 'GET', url: `${s.origin}/forever` });
    expect(forever.error?.code).toBe('HTTP_ERROR');
    expect(forever.error?.message).toContain('3600 s');
    expect(seen.get('/forever')).toBe(1);

    const always = await run({ method: 'GET', url: `${s.origin}/always` });
    expect(always.ok).toBe(false);
    expect(always.error?.code).toBe('HTTP_ERROR');
    expect(valueOf(always).status).toBe(429);
    expect(valueOf(always).attempts).toBe(4);
    expect(valueOf(always).json).toEqual({ error: 'no' });
  });

  it('retries a GET whose connection drops while the body streams in, leaving no partial file; a POST is not retried', async () => {
    const seen = new Map<string, number>();
    const s = await server((req, res) => {
      const n = (seen.get(req.url ?? '') ?? 0) + 1;
      seen.set(req.url ?? '', n);
      if ((req.url === '/flaky' && n === 1) || req.url === '/post') {
        // Promise 100 kB, send 20 kB (past the inline size, so a body file is started), then drop the connection.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100_000 });
        res.write(`{"a":"${'x'.repeat(20_000)}`);
        setTimeout(() => req.socket.destroy(), 100);
        return;
      }
      sendJson(res, 200, { n });
    });
    const { run } = setup({
      allowHosts: [s.hostEntry],
      allowPrivateAddresses: true,
      maxInlineBytes: 1024,
      maxRetries: 2,
    });

    const flaky = await run({ method: 'GET', url: `${s.origin}/flaky` }, {}, undefined, 900);
    expect(flaky.ok).toBe(true);
    expect(valueOf(flaky)).toMatchObject({ attempts: 2, json: { n: 2 } });
    expect(flaky.files).toBeUndefined();
    await expect(stat(path.join(http.outputDir, '900.body'))).rejects.toThrow();

    const post = await run({ method: 'POST', url: `${s.origin}/post`, body: 'x' }, {}, undefined, 901);
    expect(post.ok).toBe(false);
    expect(post.error?.code).toBe('ENDPOINT_UNREACHABLE');
    expect(valueOf(post).attempts).toBe(1);
    expect(seen.get('/post')).toBe(1);
    await expect(stat(path.join(http.outputDir, '901.body'))).rejects.toThrow();
  });

  it('limits requests per host while other hosts proceed', async () => {
    const slow =
      (ms: number): Handler =>
      (_req, res) => {
        setTimeout(() => sendJson(res, 200, { ok: true }), ms);
      };
    const a = await server(slow(250));
    const b = await server(slow(250));
    const { run } = setup({
      allowHosts: [a.hostEntry, b.hostEntry],
      allowPrivateAddresses: true,
      perHostConcurrency: 2,
    });
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => run({ method: 'GET', url: `${a.origin}/` })),
      ...Array.from({ length: 6 }, () => run({ method: 'GET', url: `${b.origin}/` })),
    ]);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(a.peakInFlight).toBe(2);
    expect(b.peakInFlight).toBe(2);
    const lower = await Promise.all(
      Array.from({ length: 4 }, () => run({ method: 'GET', url: `${a.origin}/` }, { perHostConcurrency: 1 })),
    );
    expect(lower.every((r) => r.ok)).toBe(true);
  });

  it('times out a request that does not answer, and aborts one in flight when the task is cancelled', async () => {
    let closedWhileOpen = 0;
    const s = await server((req, res) => {
      res.on('close', () => {
        if (!res.writableFinished) closedWhileOpen++;
      });
      if (req.url === '/slow-body') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
      }
      // Otherwise: never answer.
    });
    const { run } = setup({ allowHosts: [s.hostEntry], allowPrivateAddresses: true });

    const timed = await run({ method: 'GET', url: `${s.origin}/hang`, timeoutSeconds: 0.3 });
    expect(timed.error?.code).toBe('TIMEOUT');

    for (const url of ['/hang', '/slow-body']) {
      const controller = new AbortController();
      const before = s.requests.length;
      const pending = run({ method: 'GET', url: `${s.origin}${url}` }, {}, controller.signal);
      const outcome = pending.then(
        (r) => ({ r }),
        (e: unknown) => ({ e }),
      );
      await expect.poll(() => s.requests.length).toBe(before + 1);
      await new Promise((r) => setTimeout(r, 50));
      controller.abort(new Error('cancelled by test'));
      // Both would hang for good without the abort (how fast they stop: npm run bench stops).
      const settled = await outcome;
      expect('e' in settled ? String(settled.e) : '').toContain('cancelled by test');
    }
    await expect.poll(() => closedWhileOpen).toBeGreaterThanOrEqual(3);
  });

  it('always asks for uncompressed bodies, so they can be redacted and parsed whatever the request says', async () => {
    const s = await server((req, res) => {
      const body = JSON.stringify({ you_sent: req.headers.authorization ?? '' });
      if (/gzip/.test(String(req.headers['accept-encoding'] ?? ''))) {
        const packed = gzipSync(body);
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          'content-length': packed.length,
        });
        res.end(packed);
        return;
      }
      sendJson(res, 200, JSON.parse(body));
    });
    const { run } = setup(
      { allowHosts: [s.hostEntry], allowPrivateAddresses: true, secretEnv: ['TEST_TOKEN'] },
      { TEST_TOKEN: SECRET },
    );
    // A stored request may carry its own Accept-Encoding (the tool refuses it; older jobs may not have been checked).
    const result = await run({
      method: 'GET',
      url: `${s.origin}/`,
      headers: { 'Accept-Encoding': 'gzip, br', authorization: 'Bearer ${env:TEST_TOKEN}' },
    });
    expect(result.ok).toBe(true);
    expect(s.requests[0]?.headers['accept-encoding']).toBe('identity');
    expect(valueOf(result).json).toEqual({ you_sent: 'Bearer [redacted:TEST_TOKEN]' });
  });
});
