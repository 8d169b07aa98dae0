import { readFile, stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { sendJson, streamBytes } from '../../fixtures/http-server.js';
import { httpHarness, valueOf } from './harness.js';

const http = httpHarness();
const { server, setup } = http;

describe('HttpPool response', () => {
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
    // The result envelope: the whole output is files.output, whatever the kind.
    expect(Object.keys(result.files ?? {})).toEqual(['output']);
    expect(await readFile(result.files?.output ?? '', 'utf8')).toBe(text);
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
    expect(v.cut).toBe(true);
    // The whole output file is cut too: the kind says so apart from `cut` (a preview of a whole file).
    expect(v.truncated).toBe(true);
    expect(v.bytes).toBe(cap);
    expect(v.binary).toBe(true);
    expect((await stat(result.files?.output ?? '')).size).toBe(cap);
    const outcome = await served;
    expect(outcome?.aborted).toBe(true);
    expect(outcome?.written).toBeLessThan(50 * 1024 * 1024);
  });
});
