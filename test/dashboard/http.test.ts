import { rm } from 'node:fs/promises';
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

  it('moves the token into an HttpOnly, SameSite=Strict cookie, which then stands for it', async () => {
    const page = await send(withToken('/'), { host });
    expect(page.headers['set-cookie']).toEqual([
      `monitor_dashboard=${dashboard.token}; HttpOnly; SameSite=Strict; Path=/`,
    ]);
    const cookie = `monitor_dashboard=${dashboard.token}`;
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
});

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
