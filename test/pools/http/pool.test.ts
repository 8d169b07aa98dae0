import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import type { Logger } from '../../../src/log.js';
import { HttpPool } from '../../../src/pools/http/pool.js';
import type { HttpJobOptions, HttpTaskInput } from '../../../src/pools/http/request.js';
import {
  type Handler,
  sendJson,
  startHttpServer,
  streamBytes,
  type TestHttpServer,
} from '../../fixtures/http-server.js';
import { makeTempDir, testConfig } from '../../helpers/client.js';

const SECRET = 'tok_9f8e7d6c5b4a3210_SECRET';

interface Setup {
  pool: HttpPool;
  logLines: string[];
  run(input: HttpTaskInput, options?: HttpJobOptions, signal?: AbortSignal, index?: number): Promise<TaskResult>;
}

let outputDir: string;
let baseSettings: Config['http'];
const servers: TestHttpServer[] = [];
const pools: HttpPool[] = [];

beforeAll(async () => {
  outputDir = await makeTempDir('monitor-http-out-');
  const config = await testConfig();
  baseSettings = config.http;
  await rm(config.stateDir, { recursive: true, force: true });
});

afterAll(async () => {
  await rm(outputDir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close();
  for (const server of servers.splice(0)) await server.close();
});

async function server(handler: Handler): Promise<TestHttpServer> {
  const s = await startHttpServer(handler);
  servers.push(s);
  return s;
}

function setup(edit: Partial<Config['http']>, env: Record<string, string> = {}): Setup {
  const logLines: string[] = [];
  const log: Logger = {
    debug: (m) => logLines.push(m),
    info: (m) => logLines.push(m),
    warn: (m) => logLines.push(m),
    error: (m) => logLines.push(m),
  };
  const pool = new HttpPool({ settings: { ...baseSettings, ...edit }, env, log });
  pools.push(pool);
  let counter = 0;
  return {
    pool,
    logLines,
    run: (input, options = {}, signal = new AbortController().signal, index = counter++) => {
      const task: TaskContext = { jobId: 'job_test', index, input, options, outputDir, attempt: 1, signal };
      return pool.run(task);
    },
  };
}

function valueOf(result: TaskResult): Record<string, unknown> {
  const value = result.value;
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`no value in ${JSON.stringify(result)}`);
  return Object.fromEntries(Object.entries(value));
}

describe('HttpPool', () => {
  it('returns status, parsed JSON and a few headers; extraction keeps only what was asked', async () => {
    const s = await server((req, res) =>
      sendJson(
        res,
        200,
        {
          items: [
            { name: 'a', owner: { login: 'x' }, big: 'y'.repeat(500) },
            { name: 'b', owner: { login: 'z' } },
          ],
        },
        { link: '<next>; rel="next"', 'x-other': '1' },
      ),
    );
    const { run } = setup({ allowHosts: [s.hostEntry], allowPrivateAddresses: true });

    const whole = await run({ method: 'GET', url: `${s.origin}/list?q=1` });
    expect(whole.ok).toBe(true);
    const v = valueOf(whole);
    expect(v.status).toBe(200);
    expect(v.url).toBe(`${s.origin}/list?q=1`);
    expect(v.attempts).toBe(1);
    expect(v.headers).toEqual({
      'content-type': 'application/json',
      'content-length': expect.any(String),
      link: '<next>; rel="next"',
    });
    expect(v.json).toMatchObject({ items: [{ name: 'a' }, { name: 'b' }] });

    const pointer = await run({ method: 'GET', url: `${s.origin}/`, extract: '/items/1/owner/login' });
    expect(valueOf(pointer).json).toBe('z');
    const fields = await run(
      { method: 'GET', url: `${s.origin}/` },
      { extract: { pointer: '/items', fields: ['name', 'owner.login', 'missing.path'] } },
    );
    expect(valueOf(fields).json).toEqual([
      { name: 'a', 'owner.login': 'x', 'missing.path': null },
      { name: 'b', 'owner.login': 'z', 'missing.path': null },
    ]);
    const nowhere = await run({ method: 'GET', url: `${s.origin}/`, extract: '/nope' });
    expect(valueOf(nowhere).json).toBeNull();
    expect(valueOf(nowhere).extract_missing).toContain('/nope');
  });

  it('refuses a host off the allowlist without sending anything', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const { run } = setup({ allowHosts: ['api.example.com'], allowPrivateAddresses: true });
    const result = await run({ method: 'GET', url: `${s.origin}/` });
    expect(result.ok).toBe(false);
    expect(result.error?.code).toBe('HOST_NOT_ALLOWED');
    expect(result.error?.hint).toContain(`--http-allow-host ${s.hostEntry}`);
    expect(s.requests).toHaveLength(0);
  });

  it('refuses loopback addresses unless private addresses are allowed, checking what a name resolves to', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const { run } = setup({ allowHosts: [s.hostEntry, `localhost:${s.port}`], allowPrivateAddresses: false });
    const literal = await run({ method: 'GET', url: `${s.origin}/` });
    expect(literal.error?.code).toBe('ADDRESS_NOT_ALLOWED');
    expect(literal.error?.message).toContain('loopback');
    expect(literal.error?.hint).toContain('--http-allow-private');
    // The name is on the allowlist; what it resolves to is not public, so it is refused at connect time.
    const named = await run({ method: 'GET', url: `http://localhost:${s.port}/` });
    expect(named.error?.code).toBe('ADDRESS_NOT_ALLOWED');
    expect(named.error?.message).toContain('localhost');
    expect(s.requests).toHaveLength(0);

    const allowed = setup({ allowHosts: [`localhost:${s.port}`], allowPrivateAddresses: true });
    const ok = await allowed.run({ method: 'GET', url: `http://localhost:${s.port}/` });
    expect(ok.ok).toBe(true);
    expect(s.requests).toHaveLength(1);
  });

  it('follows redirects within the allowlist and refuses one that leaves it', async () => {
    const outside = await server((req, res) => sendJson(res, 200, { reached: true }));
    const other = await server((req, res, body) =>
      sendJson(res, 200, { method: req.method, auth: req.headers.authorization ?? null, body }),
    );
    const s = await server((req, res) => {
      const target =
        req.url === '/hop'
          ? '/final'
          : req.url === '/away'
            ? `${outside.origin}/stolen`
            : req.url === '/cross'
              ? `${other.origin}/landing`
              : req.url === '/loop'
                ? '/loop'
                : undefined;
      if (target) {
        res.writeHead(req.url === '/cross' ? 303 : 302, { location: target });
        res.end();
        return;
      }
      sendJson(res, 200, { path: req.url });
    });
    const { run } = setup(
      { allowHosts: [s.hostEntry, other.hostEntry], allowPrivateAddresses: true, secretEnv: ['TEST_TOKEN'] },
      { TEST_TOKEN: SECRET },
    );

    const hop = await run({ method: 'GET', url: `${s.origin}/hop` });
    expect(hop.ok).toBe(true);
    expect(valueOf(hop).json).toEqual({ path: '/final' });
    expect(valueOf(hop).url).toBe(`${s.origin}/final`);
    expect(valueOf(hop).redirects).toEqual([`${s.origin}/final`]);

    const away = await run({ method: 'GET', url: `${s.origin}/away` });
    expect(away.ok).toBe(false);
    expect(away.error?.code).toBe('REDIRECT_NOT_ALLOWED');
    expect(away.error?.message).toContain(outside.hostEntry);
    expect(outside.requests).toHaveLength(0);

    // 303 after a POST becomes a GET without body; credentials stay with the origin they were for.
    const cross = await run({
      method: 'POST',
      url: `${s.origin}/cross`,
      headers: { authorization: 'Bearer ${env:TEST_TOKEN}', 'content-type': 'text/plain' },
      body: 'payload',
    });
    expect(cross.ok).toBe(true);
    expect(valueOf(cross).json).toEqual({ method: 'GET', auth: null, body: '' });
    expect(s.requests.find((r) => r.url === '/cross')?.headers.authorization).toBe(`Bearer ${SECRET}`);

    const loop = await run({ method: 'GET', url: `${s.origin}/loop` });
    expect(loop.error?.code).toBe('REDIRECT_NOT_ALLOWED');
    expect(loop.error?.message).toContain('more than 5');
  });

  it('names the scheme of a refused redirect target (file:, ftp:) instead of its origin "null"', async () => {
    const s = await server((req, res) => {
      res.writeHead(302, { location: req.url === '/ftp' ? 'ftp://files.example.com/x' : 'file:///etc/passwd' });
      res.end();
    });
    const { run } = setup({ allowHosts: [s.hostEntry], allowPrivateAddresses: true });
    const file = await run({ method: 'GET', url: `${s.origin}/file` });
    expect(file.error?.code).toBe('REDIRECT_NOT_ALLOWED');
    expect(file.error?.message).toBe(
      `${s.origin}/file redirected (302) to file:///etc/passwd; the file: scheme is refused: only http(s) redirects to allowed hosts are followed.`,
    );
    const ftp = await run({ method: 'GET', url: `${s.origin}/ftp` });
    expect(ftp.error?.message).toContain('redirected (302) to ftp://files.example.com/x; the ftp: scheme is refused');
  });

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

    // Asked to wait an hour: fails at once instead.
    const t1 = Date.now();
    const forever = await run({ method: 'GET', url: `${s.origin}/forever` });
    expect(Date.now() - t1).toBeLessThan(30_000);
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

  it('substitutes ${env:NAME} secrets and keeps them out of values, files and logs, even when echoed back', async () => {
    const s = await server((req, res) => {
      const auth = req.headers.authorization ?? '';
      if (req.url === '/json') return sendJson(res, 200, { you_sent: auth }, { link: `<https://x/?t=${auth}>` });
      if (req.url === '/fail') return sendJson(res, 401, { bad_token: auth });
      // A dropped connection: the failure is logged, with the URL (which here carries the secret's value).
      if (req.url?.startsWith('/reset')) return void req.socket.destroy();
      // A large text echo, written so the secret straddles two network chunks.
      res.writeHead(200, { 'content-type': 'text/plain' });
      const filler = 'z'.repeat(40_000);
      const cut = Math.floor(auth.length / 2);
      res.write(filler + auth.slice(0, cut));
      setTimeout(() => res.end(auth.slice(cut) + filler + auth), 50);
    });
    const { run, logLines } = setup(
      {
        allowHosts: [s.hostEntry],
        allowPrivateAddresses: true,
        secretEnv: ['TEST_TOKEN'],
        maxInlineBytes: 1024,
        maxRetries: 1,
      },
      { TEST_TOKEN: SECRET },
    );
    const headers = { authorization: 'Bearer ${env:TEST_TOKEN}' };
    const results = [
      await run({ method: 'GET', url: `${s.origin}/json`, headers }),
      await run({ method: 'GET', url: `${s.origin}/text` }, { headers }),
      await run({ method: 'GET', url: `${s.origin}/fail`, headers }),
      await run({ method: 'GET', url: `${s.origin}/reset?echo=${SECRET}`, headers }),
    ];
    expect(s.requests.map((r) => r.headers.authorization)).toEqual(Array.from({ length: 5 }, () => `Bearer ${SECRET}`));
    expect(results[0]?.value).toMatchObject({ json: { you_sent: 'Bearer [redacted:TEST_TOKEN]' } });
    expect(results[2]?.error?.code).toBe('HTTP_ERROR');
    expect(results[3]?.error?.code).toBe('ENDPOINT_UNREACHABLE');
    expect(results[3]?.value).toMatchObject({ attempts: 2, url: `${s.origin}/reset?echo=[redacted:TEST_TOKEN]` });
    // The retry and the failure were logged, and the log shows the URL with the secret's value redacted.
    expect(logLines.length).toBeGreaterThanOrEqual(2);
    expect(logLines.join('\n')).toContain('/reset?echo=[redacted:TEST_TOKEN]');

    const outputs = [JSON.stringify(results), logLines.join('\n')];
    const bodyFile = results[1]?.files?.body;
    expect(bodyFile).toBeDefined();
    for (const file of await readdir(outputDir)) outputs.push(await readFile(path.join(outputDir, file), 'utf8'));
    for (const text of outputs) expect(text).not.toContain(SECRET);
    const fileText = await readFile(bodyFile ?? '', 'utf8');
    expect(fileText.split('[redacted:TEST_TOKEN]')).toHaveLength(3);
    expect(fileText.length).toBe(80_000 + 2 * 'Bearer [redacted:TEST_TOKEN]'.length);
  });

  it('fails a request whose secret is not allowed or not set, naming the var but never a value', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const { run } = setup(
      { allowHosts: [s.hostEntry], allowPrivateAddresses: true, secretEnv: ['SET_TOKEN', 'UNSET_TOKEN'] },
      { SET_TOKEN: SECRET, OTHER: 'other-value' },
    );
    const unset = await run({ method: 'GET', url: `${s.origin}/`, headers: { 'x-key': '${env:UNSET_TOKEN}' } });
    expect(unset.error?.code).toBe('SECRET_NOT_SET');
    expect(unset.error?.message).toContain('UNSET_TOKEN');
    const notAllowed = await run({ method: 'GET', url: `${s.origin}/`, headers: { 'x-key': '${env:OTHER}' } });
    expect(notAllowed.error?.code).toBe('SECRET_NOT_SET');
    expect(notAllowed.error?.hint).toContain('--http-secret-env OTHER');
    expect(JSON.stringify([unset, notAllowed])).not.toContain('other-value');
    expect(s.requests).toHaveLength(0);
  });

  // Its own timeout: streaming 20 MB through a loaded machine takes seconds. (The server's memory
  // under this load is a goal of `npm run bench memory`; body.test.ts checks what readBody keeps.)
  it('caps a 50 MB response: stops reading, keeps what was read in the file', { timeout: 30_000 }, async () => {
    let served: Promise<{ written: number; aborted: boolean }> | undefined;
    const s = await server((req, res) => {
      served = streamBytes(res, 50 * 1024 * 1024);
    });
    const cap = 20 * 1024 * 1024;
    const { run } = setup({
      allowHosts: [s.hostEntry],
      allowPrivateAddresses: true,
      maxResponseBytes: cap,
      maxInlineBytes: 4096,
    });

    const result = await run({ method: 'GET', url: `${s.origin}/big` });

    const v = valueOf(result);
    expect(result.ok).toBe(true);
    expect(v.truncated).toBe(true);
    expect(v.bytes).toBe(cap);
    expect(v.binary).toBe(true);
    expect((await stat(result.files?.body ?? '')).size).toBe(cap);
    const outcome = await served;
    expect(outcome?.aborted).toBe(true);
    expect(outcome?.written).toBeLessThan(50 * 1024 * 1024);
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
    await expect(stat(path.join(outputDir, '900.body'))).rejects.toThrow();

    const post = await run({ method: 'POST', url: `${s.origin}/post`, body: 'x' }, {}, undefined, 901);
    expect(post.ok).toBe(false);
    expect(post.error?.code).toBe('ENDPOINT_UNREACHABLE');
    expect(valueOf(post).attempts).toBe(1);
    expect(seen.get('/post')).toBe(1);
    await expect(stat(path.join(outputDir, '901.body'))).rejects.toThrow();
  });

  it('keeps a text preview inline and the whole body in the file', async () => {
    const text = Array.from({ length: 3000 }, (_, i) => `line ${i} ü`).join('\n');
    const s = await server((req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(text);
    });
    const { run } = setup({ allowHosts: [s.hostEntry], allowPrivateAddresses: true, maxInlineBytes: 1000 });
    const result = await run({ method: 'GET', url: `${s.origin}/missing` });
    expect(result.ok).toBe(false);
    expect(result.error?.code).toBe('HTTP_ERROR');
    expect(result.error?.message).toContain('404');
    const v = valueOf(result);
    expect(v.cut).toBe(true);
    expect(typeof v.text === 'string' && text.startsWith(v.text)).toBe(true);
    expect(Buffer.byteLength(String(v.text))).toBeLessThanOrEqual(1000);
    expect(await readFile(result.files?.body ?? '', 'utf8')).toBe(text);
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
      const t0 = Date.now();
      controller.abort(new Error('cancelled by test'));
      const settled = await outcome;
      // Both would hang for good without the abort.
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect('e' in settled ? String(settled.e) : '').toContain('cancelled by test');
    }
    await expect.poll(() => closedWhileOpen).toBeGreaterThanOrEqual(3);
  });
});
