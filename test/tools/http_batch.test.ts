import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/registry.js';
import { sendJson, startHttpServer, type TestHttpServer } from '../fixtures/http-server.js';
import { type Connected, connectInMemory, jobIdOf, testConfig, textOf } from '../helpers/client.js';

const SECRET = 'ghp_TESTsecretVALUE_0123456789abcdef';

let open: Connected | undefined;
const servers: TestHttpServer[] = [];
afterEach(async () => {
  await open?.close();
  open = undefined;
  for (const s of servers.splice(0)) await s.close();
});

async function server(handler: Parameters<typeof startHttpServer>[0]): Promise<TestHttpServer> {
  const s = await startHttpServer(handler);
  servers.push(s);
  return s;
}

async function connect(edit: (http: Config['http']) => void, env: Record<string, string> = {}): Promise<Connected> {
  open = await connectInMemory(await testConfig((c) => edit(c.http)), { env });
  return open;
}

interface Page {
  jobs: Array<{ state: string; counts: Record<string, number> }>;
  results: Array<{
    index: number;
    state: string;
    value?: Record<string, unknown>;
    error?: { code: string; message: string };
    files?: Record<string, string>;
  }>;
}
const page = (r: { structuredContent?: unknown }): Page => r.structuredContent as Page;

async function allFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('http_batch', () => {
  it('fans out requests, and collect_results returns status, extracted JSON and the final URL', async () => {
    const s = await server((req, res) => {
      if (req.url === '/old') {
        res.writeHead(301, { location: '/repos/new' });
        res.end();
        return;
      }
      sendJson(res, 200, { path: req.url, owner: { login: 'octo' }, noise: 'n'.repeat(200) });
    });
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
      h.allowPrivateAddresses = true;
    });
    const reply = await m.call('http_batch', {
      base_url: s.origin,
      requests: [
        { url: '/repos/a' },
        { url: '/repos/b', extract: '/owner/login' },
        { url: '/old' },
        { url: `${s.origin}/post`, json: { x: 1 } },
      ],
      extract: ['path', 'owner.login'],
      label: 'repos',
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const jobId = jobIdOf(reply);
    const collected = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30 });
    const p = page(collected);
    expect(p.jobs[0]?.state).toBe('succeeded');
    const byIndex = new Map(p.results.map((r) => [r.index, r.value ?? {}]));
    expect(byIndex.get(0)?.json).toEqual({ path: '/repos/a', 'owner.login': 'octo' });
    expect(byIndex.get(1)?.json).toBe('octo');
    expect(byIndex.get(2)?.url).toBe(`${s.origin}/repos/new`);
    expect(byIndex.get(2)?.redirects).toEqual([`${s.origin}/repos/new`]);
    expect(byIndex.get(0)?.status).toBe(200);
    const post = s.requests.find((r) => r.url === '/post');
    expect(post?.method).toBe('POST');
    expect(post?.headers['content-type']).toBe('application/json');
    expect(post?.body).toBe('{"x":1}');
  });

  it('refuses the whole batch when a host is off the allowlist, saying how to enable it', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
      h.allowPrivateAddresses = true;
    });
    const reply = await m.call('http_batch', {
      requests: [{ url: `${s.origin}/fine` }, { url: 'https://api.example.com/x' }],
    });
    expect(reply.isError).toBe(true);
    const text = textOf(reply);
    expect(text).toContain('HOST_NOT_ALLOWED');
    expect(text).toContain('api.example.com');
    expect(text).toContain('--http-allow-host api.example.com');
    expect(text).toContain('MONITOR_HTTP_ALLOW_HOSTS');
    expect(text).toContain('"allowHosts"');
    expect(s.requests).toHaveLength(0);
    const jobs = await m.call('list_jobs', {});
    expect(textOf(jobs)).not.toContain('job_');

    const empty = await connect(() => undefined);
    const none = await empty.call('http_batch', { requests: [{ url: 'https://api.github.com/' }] });
    expect(textOf(none)).toContain('the allowlist is empty');
  });

  it('refuses headers the client owns, Accept-Encoding included (bodies must stay redactable), naming the request', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
      h.allowPrivateAddresses = true;
    });
    const own = await m.call('http_batch', {
      requests: [{ url: `${s.origin}/` }, { url: `${s.origin}/`, headers: { 'Accept-Encoding': 'gzip' } }],
    });
    expect(own.isError).toBe(true);
    expect(textOf(own)).toMatch(
      /^INVALID_INPUT: requests\[1\]: headers: The Accept-Encoding header is managed by the HTTP client[\s\S]*Next: .*uncompressed/,
    );
    const shared = await m.call('http_batch', {
      requests: [{ url: `${s.origin}/` }],
      headers: { host: 'elsewhere.example' },
    });
    expect(textOf(shared)).toMatch(/^INVALID_INPUT: headers: The host header is managed/);
    expect(s.requests).toHaveLength(0);
  });

  it('refuses a loopback target unless private addresses are allowed', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
    });
    const reply = await m.call('http_batch', { requests: [{ url: `${s.origin}/` }] });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toContain('ADDRESS_NOT_ALLOWED');
    expect(textOf(reply)).toContain('--http-allow-private');
    expect(s.requests).toHaveLength(0);
  });

  it('a redirect out of the allowlist fails that request only', async () => {
    const outside = await server((req, res) => sendJson(res, 200, { leaked: true }));
    const s = await server((req, res) => {
      if (req.url === '/bounce') {
        res.writeHead(302, { location: `${outside.origin}/collect` });
        res.end();
        return;
      }
      sendJson(res, 200, { ok: true });
    });
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
      h.allowPrivateAddresses = true;
    });
    const jobId = jobIdOf(
      await m.call('http_batch', { requests: [{ url: `${s.origin}/bounce` }, { url: `${s.origin}/fine` }] }),
    );
    const p = page(await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30 }));
    const bounced = p.results.find((r) => r.index === 0);
    expect(bounced?.state).toBe('failed');
    expect(bounced?.error?.code).toBe('REDIRECT_NOT_ALLOWED');
    expect(p.results.find((r) => r.index === 1)?.state).toBe('succeeded');
    expect(outside.requests).toHaveLength(0);
  });

  it('never lets a secret reach results, stored job files or the reply, even when the API echoes it', async () => {
    const s = await server((req, res) => {
      const auth = req.headers.authorization ?? '';
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`${'x'.repeat(50_000)} ${auth} ${'y'.repeat(1000)}`);
        return;
      }
      sendJson(res, req.url === '/denied' ? 403 : 200, { echoed: auth, headers: req.headers });
    });
    const m = await connect(
      (h) => {
        h.allowHosts = [s.hostEntry];
        h.allowPrivateAddresses = true;
        h.secretEnv = ['GITHUB_TOKEN'];
      },
      { GITHUB_TOKEN: SECRET },
    );
    const reply = await m.call('http_batch', {
      headers: { Authorization: 'Bearer ${env:GITHUB_TOKEN}' },
      requests: [{ url: `${s.origin}/me` }, { url: `${s.origin}/big` }, { url: `${s.origin}/denied` }],
      wait_seconds: 30,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const jobId = jobIdOf(reply);
    expect(s.requests.every((r) => r.headers.authorization === `Bearer ${SECRET}`)).toBe(true);
    const outputs: string[] = [textOf(reply), JSON.stringify(reply.structuredContent)];
    for (const merge of ['list', 'text', 'json']) {
      const collected = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30, merge });
      outputs.push(textOf(collected), JSON.stringify(collected.structuredContent));
    }
    outputs.push(textOf(await m.call('list_jobs', {})));
    const files = await allFiles(m.config.stateDir);
    expect(files.some((f) => f.endsWith('.body'))).toBe(true);
    for (const file of files) outputs.push(await readFile(file, 'utf8'));
    for (const text of outputs) expect(text).not.toContain(SECRET);
    expect(outputs.join('\n')).toContain('[redacted:GITHUB_TOKEN]');
    // The stored job keeps the template, so a resumed task can substitute it again.
    expect(outputs.join('\n')).toContain('Bearer ${env:GITHUB_TOKEN}');
  });

  it('refuses at submit a secret that is not allowed or not set, naming the variable', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const m = await connect(
      (h) => {
        h.allowHosts = [s.hostEntry];
        h.allowPrivateAddresses = true;
        h.secretEnv = ['MISSING_TOKEN'];
      },
      { OTHER_TOKEN: 'value-that-must-not-show' },
    );
    const missing = await m.call('http_batch', {
      requests: [{ url: `${s.origin}/`, headers: { 'x-api-key': '${env:MISSING_TOKEN}' } }],
    });
    expect(missing.isError).toBe(true);
    expect(textOf(missing)).toContain('SECRET_NOT_SET');
    expect(textOf(missing)).toContain('MISSING_TOKEN');
    const other = await m.call('http_batch', {
      requests: [{ url: `${s.origin}/`, headers: { 'x-api-key': '${env:OTHER_TOKEN}' } }],
    });
    expect(textOf(other)).toContain('--http-secret-env OTHER_TOKEN');
    expect(textOf(other)).not.toContain('value-that-must-not-show');
    const inUrl = await m.call('http_batch', { requests: [{ url: `${s.origin}/?key=\${env:OTHER_TOKEN}` }] });
    expect(textOf(inUrl)).toContain('headers only');
    // base_url is a URL too: a template there would be sent literally (its braces percent-encoded).
    for (const base of [`${s.origin}/\${env:OTHER_TOKEN}/`, `${s.origin}/?key=\${env:OTHER_TOKEN}`]) {
      const inBase = await m.call('http_batch', { base_url: base, requests: [{ url: 'items' }] });
      expect(inBase.isError).toBe(true);
      expect(textOf(inBase)).toMatch(/INVALID_INPUT: .*headers only, not in base_url/);
      expect(textOf(inBase)).toContain('Bearer ${env:API_TOKEN}');
    }
    expect(s.requests).toHaveLength(0);
  });

  it('refuses values above the configured limits, naming the limit and how to raise it; values within them run', async () => {
    const s = await server((req, res) => sendJson(res, 200, {}));
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
      h.allowPrivateAddresses = true;
      h.maxConcurrency = 8;
      h.perHostConcurrency = 2;
      h.maxRetries = 1;
    });
    const requests = [{ url: `${s.origin}/` }];
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [
        { concurrency: 9 },
        /INVALID_INPUT: concurrency 9 is more than http\.maxConcurrency \(8\)[\s\S]*Next: .*concurrency of at most 8.*"http": \{"maxConcurrency"/,
      ],
      [
        { per_host_concurrency: 3 },
        /INVALID_INPUT: per_host_concurrency 3 is more than http\.perHostConcurrency \(2\)[\s\S]*"perHostConcurrency"/,
      ],
      [{ max_retries: 2 }, /INVALID_INPUT: max_retries 2 is more than http\.maxRetries \(1\)[\s\S]*"maxRetries"/],
    ];
    for (const [args, expected] of cases) {
      const reply = await m.call('http_batch', { requests, ...args });
      expect(reply.isError, JSON.stringify(args)).toBe(true);
      expect(textOf(reply)).toMatch(expected);
    }
    expect(s.requests).toHaveLength(0);
    const within = await m.call('http_batch', {
      requests,
      concurrency: 8,
      per_host_concurrency: 2,
      max_retries: 1,
      wait_seconds: 20,
    });
    expect(within.isError, textOf(within)).toBeFalsy();
    expect(page(within).results[0]?.state).toBe('succeeded');
    // The default concurrency (16) above a lowered limit is not the caller's doing: it runs at the limit.
    const byDefault = await m.call('http_batch', { requests });
    expect(byDefault.isError, textOf(byDefault)).toBeFalsy();
    expect(textOf(byDefault)).toContain('up to 8 at once');
  });

  it('cancel_job aborts requests in flight', async () => {
    let hungUp = 0;
    const s = await server((req, res) => {
      res.on('close', () => {
        if (!res.writableFinished) hungUp++;
      });
      // Never answers: only a cancel ends these requests.
    });
    const m = await connect((h) => {
      h.allowHosts = [s.hostEntry];
      h.allowPrivateAddresses = true;
      h.timeoutSeconds = 120;
    });
    const jobId = jobIdOf(
      await m.call('http_batch', { requests: Array.from({ length: 6 }, (_, i) => ({ url: `${s.origin}/${i}` })) }),
    );
    // The per-host limit (4 by default) holds the other two back.
    await expect.poll(() => s.requests.length, { timeout: 10_000 }).toBe(4);
    const cancel = await m.call('cancel_job', { job_id: jobId });
    expect(cancel.isError, textOf(cancel)).toBeFalsy();
    await expect.poll(() => hungUp, { timeout: 5000 }).toBe(4);
    const p = page(await m.call('collect_results', { job_ids: [jobId], wait_seconds: 10 }));
    expect(p.jobs[0]?.counts.cancelled).toBe(6);
    expect(s.requests).toHaveLength(4);
  });
});
