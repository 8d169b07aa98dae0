import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { getToolUiResourceUri } from '@modelcontextprotocol/ext-apps/app-bridge';
import {
  RESOURCE_MIME_TYPE,
  RESOURCE_URI_META_KEY,
  registerAppResource,
  registerAppTool,
} from '@modelcontextprotocol/ext-apps/server';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import {
  assembleJobsView,
  clientAsGlobal,
  JOBS_VIEW_URI,
  LEGACY_RESOURCE_URI_KEY,
  MCP_APP_MIME_TYPE,
  packageViewFiles,
  serveJobsView,
  inlineImports,
  type ViewFiles,
} from '../../src/tools/ui.js';
import { connectInMemory, type Connected, makeTempDir, testConfig } from '../helpers/client.js';

/** The tools whose results open the view: every dispatch tool, and the job tools that return jobs. */
const LINKED = [
  'run_script_batch',
  'http_batch',
  'lmstudio_complete',
  'lmstudio_investigate',
  'collect_results',
  'list_jobs',
  'resume_job',
];

/**
 * URLs the inlined ext-apps client carries as plain values, never requested: JSON Schema `$schema`
 * identifiers, zod's URL-formatting templates and a documentation example.
 */
const CLIENT_IDENTIFIERS = [
  /^https?:\/\/json-schema\.org\/draft[-/\w]*\/schema#?$/,
  /^http:\/\/\[\$\{\w+(\.\w+)?\}\]$/,
  /^https:\/\/\*\.example\.com$/,
];

/** Where `pattern` (global) matches in `text`, each with a little context: short failure messages on a 340 KB page. */
function found(text: string, pattern: RegExp): string[] {
  return [...text.matchAll(pattern)].map((m) => text.slice(Math.max(0, m.index - 30), m.index + m[0].length + 30));
}

describe('the jobs view through a real MCP client', () => {
  let connected: Connected;
  let html = '';

  beforeAll(async () => {
    connected = await connectInMemory(await testConfig());
  });
  afterAll(async () => connected?.close());

  it('is listed as a resource of the MCP Apps MIME type, with its UI metadata', async () => {
    expect(connected.client.getServerCapabilities()?.resources).toEqual({});
    const { resources } = await connected.client.listResources();
    expect(resources).toEqual([
      expect.objectContaining({
        uri: JOBS_VIEW_URI,
        name: 'jobs-view',
        mimeType: 'text/html;profile=mcp-app',
        _meta: { ui: { csp: { connectDomains: [], resourceDomains: [] }, prefersBorder: true } },
      }),
    ]);
    expect((await connected.client.listResourceTemplates()).resourceTemplates).toEqual([]);
  });

  it('reads as one self-contained HTML document of that MIME type', async () => {
    const { contents } = await connected.client.readResource({ uri: JOBS_VIEW_URI });
    expect(contents).toHaveLength(1);
    const [content] = contents;
    expect(content).toMatchObject({
      uri: JOBS_VIEW_URI,
      mimeType: MCP_APP_MIME_TYPE,
      _meta: { ui: { csp: { connectDomains: [], resourceDomains: [] }, prefersBorder: true } },
    });
    html = content && 'text' in content ? content.text : '';
    expect(html.startsWith('<!doctype html>')).toBe(true);
    // The style, the App client and the script are in the page: no tag points at a file.
    expect(html).toContain('globalThis.McpExtApps = Object.freeze({');
    expect(html).toContain('app.callServerTool(');
    expect(found(html, /<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=/gi)).toEqual([]);
    expect(found(html, /\bimport\s*\{[^}]*\}\s*from\s*['"]/g)).toEqual([]);
    expect(html.match(/<script type="module">/g)).toHaveLength(2);
    expect(html.length).toBeLessThan(450_000);
  });

  it('refers to no other origin: nothing to fetch, in its markup, style or code', async () => {
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)?.[1] ?? '';
    expect(style.length).toBeGreaterThan(1000);
    expect(found(style, /@import|url\(/gi)).toEqual([]);
    expect(found(html, /\b(fetch|XMLHttpRequest|WebSocket|EventSource|sendBeacon)\s*\(|\bsrc\s*=/g)).toEqual([]);
    const urls = [...html.matchAll(/https?:\/\/[^\s"'`)\\]+/g)].map((m) => m[0]);
    expect(urls.filter((url) => !CLIENT_IDENTIFIERS.some((known) => known.test(url)))).toEqual([]);
    // And none at all in our own files.
    const web = path.dirname(packageViewFiles().page);
    const own = (await readdir(web)).filter((name) => name.startsWith('jobs-view') || name === 'format.js');
    expect(own.sort()).toEqual(['format.js', 'jobs-view-draw.js', 'jobs-view.css', 'jobs-view.html', 'jobs-view.js']);
    for (const name of own) expect(await readFile(path.join(web, name), 'utf8'), name).not.toMatch(/https?:\/\//);
  });

  it('writes data into the page as text only: no HTML parsing anywhere in it', async () => {
    expect(found(html, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment/g)).toEqual([]);
    const script = await readFile(packageViewFiles().script, 'utf8');
    expect(script).toContain('textContent');
  });

  it('is linked from the dispatch tools, collect_results, list_jobs and resume_job, as ext-apps links a tool', async () => {
    const { tools } = await connected.client.listTools();
    const linked = tools.filter((tool) => tool._meta !== undefined).map((tool) => tool.name);
    expect(linked.sort()).toEqual([...LINKED].sort());
    // What ext-apps' own registerAppTool makes of the same link: both keys.
    let registered: { _meta?: Record<string, unknown> } = {};
    registerAppTool(
      {
        registerTool: ((_name: string, config: { _meta?: Record<string, unknown> }) => {
          registered = config;
          return undefined as never;
        }) as never,
      },
      'x',
      { _meta: { ui: { resourceUri: JOBS_VIEW_URI } } },
      () => ({ content: [] }),
    );
    for (const tool of tools.filter((t) => LINKED.includes(t.name))) {
      expect(tool._meta, tool.name).toEqual(registered._meta);
      expect(getToolUiResourceUri(tool as Partial<Tool>), tool.name).toBe(JOBS_VIEW_URI);
    }
    // The tools that show no job carry none.
    for (const name of ['list_workers', 'lmstudio_models', 'cancel_job'])
      expect(tools.find((t) => t.name === name)?._meta, name).toBeUndefined();
  });

  it("uses ext-apps' own names for the MIME type and the legacy key, and its resource defaults", () => {
    expect(MCP_APP_MIME_TYPE).toBe(RESOURCE_MIME_TYPE);
    expect(LEGACY_RESOURCE_URI_KEY).toBe(RESOURCE_URI_META_KEY);
    let config: { mimeType?: string } = {};
    registerAppResource(
      {
        registerResource: ((_name: string, _uri: string, given: { mimeType?: string }) => {
          config = given;
          return undefined as never;
        }) as never,
      },
      'jobs',
      JOBS_VIEW_URI,
      {},
      () => ({ contents: [] }),
    );
    expect(config.mimeType).toBe(MCP_APP_MIME_TYPE);
  });

  it('answers an unknown ui:// resource with "resource not found"', async () => {
    await expect(connected.client.readResource({ uri: 'ui://monitor-mcp/other' })).rejects.toMatchObject({
      code: -32002,
    });
  });
});

describe('serveJobsView', () => {
  /** A server with only the view, and a client on it; `files` counts how often the files are looked up. */
  async function serve(files: () => ViewFiles): Promise<{ client: Client; close(): Promise<void> }> {
    const server = new Server({ name: 't', version: '0' }, { capabilities: { resources: {} } });
    serveJobsView(server, silentLogger, files);
    const [a, b] = InMemoryTransport.createLinkedPair();
    await server.connect(b);
    const client = new Client({ name: 'c', version: '0' });
    await client.connect(a);
    return { client, close: () => client.close() };
  }

  it('reads its files on the first resources/read, not before, and once', async () => {
    let lookups = 0;
    const { client, close } = await serve(() => {
      lookups++;
      return packageViewFiles();
    });
    await client.listResources();
    expect(lookups).toBe(0);
    const first = await client.readResource({ uri: JOBS_VIEW_URI });
    const second = await client.readResource({ uri: JOBS_VIEW_URI });
    expect(lookups).toBe(1);
    expect(second).toEqual(first);
    await close();
  });

  it('answers a missing file with an error, and reads again on the next request', async () => {
    const dir = await makeTempDir();
    let files: ViewFiles = { ...packageViewFiles(), style: path.join(dir, 'missing.css') };
    const { client, close } = await serve(() => files);
    await expect(client.readResource({ uri: JOBS_VIEW_URI })).rejects.toThrow(/could not be read.*missing\.css/);
    files = packageViewFiles();
    expect((await client.readResource({ uri: JOBS_VIEW_URI })).contents).toHaveLength(1);
    await close();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('assembling the page', () => {
  it("turns the client's export list into a global, keeping `$` in the code as it is", () => {
    const bundle = 'var a$=1;class B{};function c(){return "$&"}\nexport{a$ as value,B as Thing,c};\n';
    const global = clientAsGlobal(bundle);
    expect(global).toContain('function c(){return "$&"}');
    expect(global).toContain('globalThis.McpExtApps = Object.freeze({ "value": a$, "Thing": B, "c": c });');
    expect(() => clientAsGlobal('var a = 1;')).toThrow(/export list/);
  });

  it("inlines the view's own modules in place of their imports, each once, and refuses any other import", async () => {
    const dir = await makeTempDir();
    await writeFile(path.join(dir, 'c.js'), 'export const c = "$&";\n');
    await writeFile(path.join(dir, 'b.js'), "import { c } from './c.js';\nexport function b() {\n  return c;\n}\n");
    await writeFile(
      path.join(dir, 'a.js'),
      "// a\nimport { b } from './b.js';\nimport {\n  c,\n} from './c.js';\n\nconsole.log(b(), c);\n",
    );
    expect(await inlineImports(path.join(dir, 'a.js'))).toBe(
      '// a\nconst c = "$&";\n\nfunction b() {\n  return c;\n}\n\n\n\nconsole.log(b(), c);\n',
    );
    await writeFile(path.join(dir, 'd.js'), "import { App } from '@modelcontextprotocol/ext-apps';\n");
    await expect(inlineImports(path.join(dir, 'd.js'))).rejects.toThrow(/d\.js has an import or export/);
    await writeFile(path.join(dir, 'e.js'), "import { x } from './f.js';\n");
    await writeFile(path.join(dir, 'f.js'), 'const x = 1;\nexport { x };\n');
    await expect(inlineImports(path.join(dir, 'e.js'))).rejects.toThrow(/f\.js has an import or export/);
    await rm(dir, { recursive: true, force: true });
  });

  it('escapes a closing script tag inside code, and refuses a page without exactly one place for each file', async () => {
    const dir = await makeTempDir();
    const files = packageViewFiles();
    const script = path.join(dir, 'view.js');
    await writeFile(script, `const s = '</script><b>';\n`);
    const page = await assembleJobsView({ ...files, script });
    expect(page).toContain(`const s = '<\\/script><b>';`);
    const twice = path.join(dir, 'page.html');
    const original = await readFile(files.page, 'utf8');
    await writeFile(twice, original.replace('</body>', '<script type="module" src="jobs-view.js"></script></body>'));
    await expect(assembleJobsView({ ...files, page: twice })).rejects.toThrow(/2 .*jobs-view.*tag\(s\), not one/);
    await rm(dir, { recursive: true, force: true });
  });
});
