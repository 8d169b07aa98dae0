import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { type RawReply, rawRequest, type RunningDashboard, startDashboard } from '../helpers/dashboard.js';
import { until } from '../helpers/scripts.js';

/** The dashboard's HTTP server (built, as `monitor-mcp dashboard` runs it on 127.0.0.1) spoken to without a browser. */

const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const NO_JOB = 'job_AAAAAAAAAAAAAAAAAAAAAA';

describe('the dashboard answers only its own page: token, Host and Origin checks (no browser)', () => {
  let stateDir = '';
  let dashboard: RunningDashboard;
  /** The Host a browser on the printed URL sends. */
  let host = '';
  const send = (pathname: string, headers: Record<string, string>, method = 'GET'): Promise<RawReply> =>
    rawRequest(dashboard.base, pathname, headers, method);
  const withToken = (pathname: string, token = dashboard.token): string =>
    `${pathname}${pathname.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;

  beforeAll(async () => {
    stateDir = await makeTempDir('monitor-dashboard-http-');
    dashboard = await startDashboard(stateDir);
    host = new URL(dashboard.base).host;
  }, 60_000);

  afterAll(async () => {
    await dashboard?.close();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('listens on 127.0.0.1 and answers the right token, given in the URL or in its header', async () => {
    expect(new URL(dashboard.base).hostname).toBe('127.0.0.1');
    expect(dashboard.token.length).toBeGreaterThanOrEqual(32);
    const byUrl = await send(withToken('/api/jobs'), { host });
    expect(byUrl.status).toBe(200);
    expect(byUrl.headers['content-type']).toMatch(/^application\/json/);
    expect((JSON.parse(byUrl.body) as { state_dir: string }).state_dir).toBe(stateDir);
    expect((await send('/api/jobs', { host, 'x-monitor-token': dashboard.token })).status).toBe(200);
    // The other loopback names of the same port are the same server.
    expect((await send(withToken('/api/jobs'), { host: host.replace('127.0.0.1', 'localhost') })).status).toBe(200);
    const page = await send(withToken('/'), { host });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
  });

  it('refuses a missing or wrong token (401) on every route, naming no token', async () => {
    const wrong = [`${dashboard.token}x`, dashboard.token.slice(1), 'A'.repeat(dashboard.token.length), ''];
    for (const route of ['/', '/api/jobs', '/api/events', '/assets/app.js', `/api/jobs/${NO_JOB}`]) {
      const none = await send(route, { host });
      expect(none.status, route).toBe(401);
      expect(none.body).toMatch(/^Refused: open the dashboard with the URL it printed/);
      for (const token of wrong) {
        expect((await send(withToken(route, token), { host })).status, `${route} with ${token}`).toBe(401);
        expect((await send(route, { host, 'x-monitor-token': token })).status, `${route} header ${token}`).toBe(401);
      }
    }
    const refused = await send(withToken('/api/jobs', `${dashboard.token}x`), { host });
    expect(refused.body).not.toContain(dashboard.token);
  });

  it('refuses a foreign Host (DNS rebinding) with 403, the right token notwithstanding', async () => {
    const port = new URL(dashboard.base).port;
    for (const foreign of [
      `attacker.example:${port}`,
      'attacker.example',
      `127.0.0.1:${Number(port) + 1}`,
      '127.0.0.1',
    ]) {
      const reply = await send(withToken('/api/jobs'), { host: foreign });
      expect(reply.status, foreign).toBe(403);
      expect(reply.body).toMatch(/^Refused: this dashboard answers only to its own address/);
    }
  });

  it('refuses a foreign Origin (CSRF) with 403, and a POST without an Origin', async () => {
    for (const origin of ['http://attacker.example', 'null', `https://${host}`, `http://${host}.attacker.example`]) {
      const reply = await send(withToken('/api/jobs'), { host, origin });
      expect(reply.status, origin).toBe(403);
      expect(reply.body).toMatch(/^Refused: a request from another origin/);
    }
    expect((await send(withToken('/api/jobs'), { host, origin: `http://${host}` })).status).toBe(200);
    for (const action of ['cancel', 'resume']) {
      const route = `/api/jobs/${NO_JOB}/${action}`;
      const bare = await send(withToken(route), { host }, 'POST');
      expect(bare.status, route).toBe(403);
      expect(bare.body).toMatch(/^Refused: a POST without an Origin header/);
      expect((await send(withToken(route), { host, origin: 'http://attacker.example' }, 'POST')).status).toBe(403);
      // Its own origin but no token: still refused, before anything reaches a server.
      expect((await send(route, { host, origin: `http://${host}` }, 'POST')).status).toBe(401);
    }
  });

  it('moves the token into an HttpOnly, SameSite=Strict cookie named for its port, which then stands for it', async () => {
    const port = new URL(dashboard.base).port;
    const page = await send(withToken('/'), { host });
    // Named per port: browsers share cookies between the ports of a host, so two dashboards keep one each.
    expect(page.headers['set-cookie']).toEqual([
      `monitor_dashboard_${port}=${dashboard.token}; HttpOnly; SameSite=Strict; Path=/`,
    ]);
    const cookie = `monitor_dashboard_${port}=${dashboard.token}`;
    // Another port's cookie, or the old shared name, is not this dashboard's.
    expect((await send('/api/jobs', { host, cookie: `monitor_dashboard=${dashboard.token}` })).status).toBe(401);
    expect(
      (await send('/api/jobs', { host, cookie: `monitor_dashboard_${Number(port) + 1}=${dashboard.token}` })).status,
    ).toBe(401);
    expect((await send('/api/jobs', { host, cookie })).status).toBe(200);
    expect((await send('/assets/app.js', { host, cookie: `theme=dark; ${cookie}` })).status).toBe(200);
    expect((await send('/api/jobs', { host, cookie: `${cookie}x` })).status).toBe(401);
    expect((await send('/api/jobs', { host, cookie: `other=${dashboard.token}` })).status).toBe(401);
    // The cookie does not lift the Host or Origin checks.
    expect((await send('/api/jobs', { host: 'attacker.example', cookie })).status).toBe(403);
    expect((await send('/api/jobs', { host, cookie, origin: 'http://attacker.example' })).status).toBe(403);
  });

  it('sends a strict CSP and no-framing headers with every answer, refusals included', async () => {
    const replies = [
      await send(withToken('/'), { host }),
      await send(withToken('/api/jobs'), { host }),
      await send('/api/jobs', { host }),
      await send(withToken('/api/jobs'), { host: 'attacker.example' }),
      await send(withToken('/nowhere'), { host }),
    ];
    expect(replies.map((reply) => reply.status)).toEqual([200, 200, 401, 403, 404]);
    for (const reply of replies) {
      expect(reply.headers['content-security-policy']).toMatch(/^default-src 'none'; script-src 'self'; /);
      expect(reply.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
      expect(reply.headers['x-frame-options']).toBe('DENY');
      expect(reply.headers['x-content-type-options']).toBe('nosniff');
      expect(reply.headers['referrer-policy']).toBe('no-referrer');
    }
  });

  it('answers 404 to a prototype key as an asset name, never 500', async () => {
    for (const name of ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__']) {
      const reply = await send(withToken(`/assets/${name}`), { host });
      expect(reply.status, name).toBe(404);
    }
    expect((await send(withToken('/assets/app.js'), { host })).status).toBe(200);
  });

  it('answers a malformed request with 4xx, never 500, and goes on serving', async () => {
    const port = Number(new URL(dashboard.base).port);
    const line = (target: string): string =>
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nx-monitor-token: ${dashboard.token}\r\nConnection: close\r\n\r\n`;
    const cases: Array<[string, string, number]> = [
      ['garbage', 'GARBAGE\r\n\r\n', 400],
      ['a broken %-escape', line('/api/jobs/%E0%A4%A'), 400],
      ['a broken %-escape in a page path', line('/jobs/%E0%A4%A'), 400],
      ['an absolute URL that does not parse', line('http://[x'), 400],
      ['a target that is no path', line('//x:y'), 400],
      ['an over-long URL', line(`/api/jobs?x=${'a'.repeat(5000)}`), 414],
      ["a request line past the parser's limit", line(`/${'a'.repeat(20_000)}`), 431],
    ];
    for (const [what, text, status] of cases) {
      const reply = await rawSocket(port, text);
      expect(reply, what).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect((await send(withToken('/api/jobs'), { host })).status, `after ${what}`).toBe(200);
    }
    const broken = await rawSocket(port, line('/api/jobs/%E0%A4%A'));
    expect(broken).toContain("Bad request: the request's URL has a broken %-escape.");
  });
});

describe('the dashboard bound to all addresses (--host 0.0.0.0)', () => {
  let stateDir = '';
  let dashboard: RunningDashboard;
  let port = '';
  /** A non-loopback IPv4 address of this machine, as another machine would name it in the Host header. */
  const external = Object.values(networkInterfaces())
    .flat()
    .find((address) => address && address.family === 'IPv4' && !address.internal)?.address;

  beforeAll(async () => {
    stateDir = await makeTempDir('monitor-dashboard-all-');
    dashboard = await startDashboard(stateDir, ['--host', '0.0.0.0', '--allow-host', 'monitor.example']);
    port = new URL(dashboard.base).port;
  }, 60_000);

  afterAll(async () => {
    await dashboard?.close();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it("answers to this machine's own addresses and each --allow-host name, and to nothing else", async () => {
    // The URL it prints opens on this machine.
    expect(new URL(dashboard.url).hostname).toBe('127.0.0.1');
    const get = (host: string): Promise<RawReply> =>
      rawRequest(dashboard.base, `/api/jobs?token=${dashboard.token}`, { host });
    const allowed = ['127.0.0.1', 'localhost', 'monitor.example', 'MONITOR.example', ...(external ? [external] : [])];
    for (const name of allowed) expect((await get(`${name}:${port}`)).status, name).toBe(200);
    for (const name of ['attacker.example', 'monitor.example.attacker.example', '0.0.0.1'])
      expect((await get(`${name}:${port}`)).status, name).toBe(403);
    if (external) expect((await get(`${external}:${Number(port) + 1}`)).status).toBe(403);
    // A POST from a page on an allowed name carries that origin.
    const post = await rawRequest(
      dashboard.base,
      `/api/jobs/${NO_JOB}/cancel?token=${dashboard.token}`,
      { host: `monitor.example:${port}`, origin: `http://monitor.example:${port}` },
      'POST',
    );
    expect(post.status).not.toBe(403);
  });

  it('warns plainly that the token travels in clear text, naming the Host names and SSH forwarding', async () => {
    await until(() => dashboard.stderr().includes('\n'), 'its warning', 10_000);
    const said = dashboard.stderr();
    expect(said).toMatch(/^Warning: the dashboard listens on 0\.0\.0\.0, not on loopback, over plain HTTP: its token/m);
    expect(said).toContain('travels in clear text');
    expect(said).toContain(`monitor.example:${port}`);
    if (external) expect(said).toContain(`${external}:${port}`);
    expect(said).toContain('ssh -L PORT:127.0.0.1:PORT');
  });

  it('refuses an --allow-host value with a port or a scheme, saying what it takes', async () => {
    for (const bad of ['host:8080', 'http://host', 'a b']) {
      const run = spawnSync(process.execPath, [cli, 'dashboard', '--state-dir', stateDir, '--allow-host', bad], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(run.status, bad).toBe(2);
      expect(run.stderr).toContain('--allow-host takes a host name or address');
    }
  });
});

/** Sends `text` over a fresh socket, and gives the answer's first line (empty when the server just closed). */
function rawSocket(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(text));
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
    });
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 10 s to ${text.slice(0, 40)}`));
    }, 10_000).unref();
  });
}

describe("the dashboard's control path (no browser)", () => {
  it(
    "resumes a killed server's job through another running server, and says so when no server runs",
    { timeout: 120_000 },
    async () => {
      const stateDir = await makeTempDir('monitor-dashboard-control-');
      const dashboard = await startDashboard(stateDir);
      const host = new URL(dashboard.base).host;
      const post = (jobId: string, action: string): Promise<RawReply> =>
        rawRequest(
          dashboard.base,
          `/api/jobs/${jobId}/${action}?token=${dashboard.token}`,
          { host, origin: `http://${host}` },
          'POST',
        );
      const servers: Array<{ client: Client; pid: number }> = [];
      const start = async (): Promise<{ client: Client; pid: number }> => {
        const transport = new StdioClientTransport({
          command: process.execPath,
          args: [cli, '--state-dir', stateDir, '--workers-dir', fixtures, '--log-level', 'warn'],
          cwd: repoRoot,
          stderr: 'pipe',
        });
        const client = new Client({ name: 'control-test', version: '0' });
        await client.connect(transport);
        const server = { client, pid: transport.pid ?? 0 };
        servers.push(server);
        return server;
      };
      try {
        const a = await start();
        const jobId = jobIdOf(
          (await a.client.callTool({
            name: 'run_script_batch',
            arguments: {
              worker: 'emit.py',
              inputs: [{ args: ['quick'] }, { args: ['slow', '0', '0', '0', '60'] }],
              concurrency: 2,
            },
          })) as CallToolResult,
        );
        // Killed once the slow task runs (its first attempt sleeps 60 s; a resumed one does not).
        await until(
          async () => {
            const jobs = (
              (await a.client.callTool({ name: 'list_jobs', arguments: {} })).structuredContent as {
                jobs: Array<{ counts: { succeeded: number; running: number } }>;
              }
            ).jobs;
            return (jobs[0]?.counts.succeeded ?? 0) === 1 && (jobs[0]?.counts.running ?? 0) === 1;
          },
          'the quick task done and the slow one running',
          30_000,
          100,
        );
        process.kill(a.pid, 'SIGKILL');
        // No server runs on the directory now: the request is withdrawn and the page told why.
        const nobody = await post(jobId, 'resume');
        expect(nobody.status).toBe(503);
        expect((JSON.parse(nobody.body) as { message: string }).message).toMatch(
          /^No running monitor-mcp server on .* took the resume within 5 s/,
        );
        const b = await start();
        const resumed = await post(jobId, 'resume');
        expect(resumed.status, resumed.body).toBe(200);
        expect(JSON.parse(resumed.body)).toMatchObject({
          ok: true,
          by_pid: b.pid,
          message: `Resumed ${jobId}: 1 task(s) queued again.`,
        });
        // B runs it now: its second attempt of the slow task is quick.
        const collected = (
          await b.client.callTool({ name: 'collect_results', arguments: { job_ids: [jobId], wait_seconds: 30 } })
        ).structuredContent as { jobs: Array<{ state: string }> };
        expect(collected.jobs[0]?.state).toBe('succeeded');
      } finally {
        for (const server of servers) {
          await server.client.close().catch(() => undefined);
          try {
            process.kill(server.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
        await dashboard.close();
        await rm(stateDir, { recursive: true, force: true });
      }
    },
  );
});
