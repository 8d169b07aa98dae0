import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sendJson } from '../../fixtures/http-server.js';
import { until } from '../../helpers/scripts.js';
import { httpHarness, SECRET } from './harness.js';

const http = httpHarness();
const { server, setup } = http;

describe('HttpPool', () => {
  it('shows requests in hand on its live card, and finished ones in its rate', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const s = await server(async (req, res) => {
      await held;
      sendJson(res, 200, { ok: true });
    });
    const { pool, run } = setup({ allowHosts: [s.hostEntry], allowPrivateAddresses: true, maxConcurrency: 3 });
    expect(pool.liveCards()).toMatchObject([{ name: 'http', busy: 0, limit: 3 }]);
    const pending = run({ method: 'GET', url: `${s.origin}/slow` });
    await until(() => pool.liveCards()[0]?.busy === 1, 'the request in hand on the card');
    release();
    expect((await pending).ok).toBe(true);
    const [card] = pool.liveCards();
    expect(card?.busy).toBe(0);
    expect(card?.rate?.unit).toBe('requests/s');
    expect(card?.rate?.series.reduce((sum, [, perSecond]) => sum + perSecond, 0)).toBeGreaterThan(0);
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
    const bodyFile = results[1]?.files?.output;
    expect(bodyFile).toBeDefined();
    for (const file of await readdir(http.outputDir))
      outputs.push(await readFile(path.join(http.outputDir, file), 'utf8'));
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
});
