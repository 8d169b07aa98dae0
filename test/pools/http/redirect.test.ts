import { describe, expect, it } from 'vitest';
import { sendJson } from '../../fixtures/http-server.js';
import { httpHarness, SECRET, valueOf } from './harness.js';

const http = httpHarness();
const { server, setup } = http;

describe('HttpPool redirects', () => {
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
});
