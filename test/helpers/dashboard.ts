import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type IncomingHttpHeaders, request } from 'node:http';
import path from 'node:path';
import { repoRoot } from './client.js';

const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');

/** Debian's chromium (apt), or the one CHROMIUM_PATH names: the browser tests drive it with playwright-core. */
export const chromiumPath =
  process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((file) => existsSync(file));

export interface RunningDashboard {
  /** The URL it printed, with its token. */
  url: string;
  base: string;
  token: string;
  process: ChildProcess;
  /** What it has written to stderr so far (its warnings). */
  stderr(): string;
  close(): Promise<void>;
}

/** `monitor-mcp dashboard` (built) on a state directory, until its first line gives the URL. */
export async function startDashboard(stateDir: string, args: readonly string[] = []): Promise<RunningDashboard> {
  const child = spawn(process.execPath, [cli, 'dashboard', '--state-dir', stateDir, '--log-level', 'warn', ...args], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the dashboard printed no URL within 20 s: ${stderr}`)), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = /^Dashboard: (\S+)\n/.exec(out);
      if (line?.[1]) {
        clearTimeout(timer);
        resolve(line[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`the dashboard exited (${String(code)}): ${stderr}`)));
  });
  const parsed = new URL(url);
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    url,
    base: parsed.origin,
    token: parsed.searchParams.get('token') ?? '',
    process: child,
    stderr: () => stderr,
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A raw request, so Host, Origin and Cookie can be anything (fetch would set or refuse them itself). */
export function rawRequest(
  base: string,
  pathname: string,
  headers: Record<string, string>,
  method = 'GET',
): Promise<RawReply> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: pathname, method, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
