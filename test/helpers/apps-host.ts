import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CallToolRequest, CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Browser, Frame, Page } from 'playwright-core';
import { startHttpServer, type TestHttpServer } from '../fixtures/http-server.js';
import { repoRoot } from './client.js';

const nodeModules = path.join(repoRoot, 'node_modules');
const hostScript = path.join(repoRoot, 'test', 'fixtures', 'apps-host.js');

/** The file a bare ESM specifier names: its package's `exports` entry for `import` (else `default`). */
function resolveBare(specifier: string): string {
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? '');
  const subpath = `.${specifier.slice(name.length)}`;
  const manifest = JSON.parse(readFileSync(path.join(nodeModules, name, 'package.json'), 'utf8')) as {
    exports?: Record<string, unknown>;
    module?: string;
    main?: string;
  };
  const pick = (entry: unknown): string | undefined => {
    if (typeof entry === 'string') return entry;
    if (!entry || typeof entry !== 'object') return undefined;
    const conditions = entry as Record<string, unknown>;
    return pick(conditions.import) ?? pick(conditions.default);
  };
  let target = pick(manifest.exports?.[subpath]);
  // A wildcard export ("./*": "./dist/esm/*"), as the SDK has.
  for (const [key, value] of Object.entries(manifest.exports ?? {}))
    if (target === undefined && key.endsWith('*') && subpath.startsWith(key.slice(0, -1)))
      target = pick(value)?.replace('*', subpath.slice(key.length - 1));
  target ??= subpath === '.' ? (manifest.module ?? manifest.main) : undefined;
  if (target === undefined) throw new Error(`cannot resolve ${specifier} for the browser`);
  return path.join(nodeModules, name, target);
}

/**
 * An import map for the host script: every bare specifier reachable from it (ext-apps' AppBridge,
 * the SDK, zod) to the package file, served from node_modules. The browser loads ext-apps as
 * published: no bundler in between.
 */
function importMap(entry: string): Record<string, string> {
  const map: Record<string, string> = {};
  const seen = new Set<string>();
  const queue = [entry];
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"'\s]+)["']/g)) {
      const specifier = match[1] ?? '';
      if (specifier.startsWith('.')) queue.push(path.resolve(path.dirname(file), specifier));
      else {
        const target = resolveBare(specifier);
        map[specifier] = `/modules/${path.relative(nodeModules, target).split(path.sep).join('/')}`;
        queue.push(target);
      }
    }
  }
  return map;
}

export interface AppsHost {
  origin: string;
  page: Page;
  /** Every tools/call the view made through the host, in order. */
  calls: CallToolRequest['params'][];
  /** Every URL the page (host or view) asked for; `blocked`: those not on this host, refused. */
  requests: string[];
  blocked: string[];
  /** Errors the page or the view threw or logged. */
  errors: string[];
  /** Opens the view for one tool call; resolves once the view has been given its input and result. */
  open(view: {
    html: string;
    toolName: string;
    input: unknown;
    result: CallToolResult;
    theme?: 'light' | 'dark';
  }): Promise<Frame>;
  close(): Promise<void>;
}

/**
 * The host page on a local HTTP server, in a new page of `browser`: nothing off this machine is
 * reachable from it (page.route refuses it, and records it). The view's tool calls go to `callTool`.
 */
export async function startAppsHost(
  browser: Browser,
  callTool: (params: CallToolRequest['params']) => Promise<CallToolResult>,
): Promise<AppsHost> {
  const map = importMap(hostScript);
  const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MCP Apps test host</title>
<script type="importmap">${JSON.stringify({ imports: map })}</script>
<style>body{margin:0;padding:24px;background:#eef0f3;font:14px system-ui}#slot{width:680px}
iframe{display:block;width:100%;height:120px;border:1px solid #d0d4da;border-radius:12px;background:#fff}</style>
<script type="module" src="/host.js"></script></head><body><div id="slot"></div></body></html>`;
  const server: TestHttpServer = await startHttpServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://host');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
      return;
    }
    const file =
      url.pathname === '/host.js'
        ? hostScript
        : path.join(nodeModules, decodeURIComponent(url.pathname.replace(/^\/modules\//, '')));
    const served =
      file === hostScript || (url.pathname.startsWith('/modules/') && file.startsWith(nodeModules + path.sep));
    if (!served || !file.endsWith('.js')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(await readFile(file));
  });
  const tab = await browser.newPage({ viewport: { width: 740, height: 900 }, deviceScaleFactor: 2 });
  const host: AppsHost = {
    origin: server.origin,
    page: tab,
    calls: [],
    requests: [],
    blocked: [],
    errors: [],
    async open(view) {
      await tab.evaluate(
        async (given) => (globalThis as unknown as { openView(v: unknown): Promise<void> }).openView(given),
        { theme: 'light', ...view },
      );
      const frame = await (await tab.$('#view'))?.contentFrame();
      if (!frame) throw new Error('the view has no frame');
      return frame;
    },
    async close() {
      await tab.close();
      await server.close();
    },
  };
  tab.on('request', (request) => host.requests.push(request.url()));
  tab.on('pageerror', (error) => host.errors.push(`pageerror: ${error.message}`));
  tab.on('console', (message) => {
    if (message.type() === 'error') host.errors.push(`console: ${message.text()}`);
  });
  await tab.route('**/*', async (route) => {
    const url = route.request().url();
    if (url.startsWith(`${server.origin}/`)) return route.continue();
    host.blocked.push(url);
    return route.abort('blockedbyclient');
  });
  await tab.exposeFunction('hostCallTool', async (params: CallToolRequest['params']) => {
    host.calls.push(params);
    return callTool(params);
  });
  await tab.goto(`${server.origin}/`);
  await tab.waitForFunction(() => typeof (globalThis as { openView?: unknown }).openView === 'function', undefined, {
    timeout: 20_000,
  });
  return host;
}
