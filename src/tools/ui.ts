import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  ErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type ReadResourceResult,
  type Resource,
} from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../log.js';

/**
 * The jobs view: an MCP App (the MCP Apps extension, `@modelcontextprotocol/ext-apps`, spec
 * 2026-01-26). Hosts that support it (Claude, VS Code, Goose…) read this resource and render it
 * inline, in a sandboxed iframe, for the result of a tool that names it in its `_meta`; the view
 * then follows the job by calling the server's tools through the host.
 */
export const JOBS_VIEW_URI = 'ui://monitor-mcp/jobs';

/**
 * The names below are ext-apps' own (RESOURCE_MIME_TYPE, RESOURCE_URI_META_KEY), written out
 * rather than imported: importing the package would load its schemas at every server start.
 * test/tools/ui.test.ts holds them equal to the package's.
 */
export const MCP_APP_MIME_TYPE = 'text/html;profile=mcp-app';
/** The flat key older hosts read; ext-apps' registerAppTool writes it beside `_meta.ui.resourceUri`. */
export const LEGACY_RESOURCE_URI_KEY = 'ui/resourceUri';

/** Nothing is fetched from anywhere (no connect or resource domains: the spec's default, said outright); a border. */
const RESOURCE_UI_META = { csp: { connectDomains: [], resourceDomains: [] }, prefersBorder: true };

/** The view as resources/list shows it. */
export const JOBS_VIEW_RESOURCE: Resource = {
  uri: JOBS_VIEW_URI,
  name: 'jobs-view',
  title: 'monitor-mcp jobs',
  description:
    "A job's progress, counts by state, failures by error code and the LLM endpoints' slots, kept up to date while it runs (an MCP App: hosts that support MCP Apps show it inline).",
  mimeType: MCP_APP_MIME_TYPE,
  _meta: { ui: RESOURCE_UI_META },
};

/** The job tools whose results the view shows (besides every dispatch tool): they return job handles or job views. */
const VIEW_JOB_TOOLS: ReadonlySet<string> = new Set(['collect_results', 'list_jobs', 'resume_job']);

/** The `_meta` a tool gets when its result opens the jobs view; undefined for the others. */
export function jobsViewToolMeta(tool: { name: string; dispatch?: boolean }): Record<string, unknown> | undefined {
  if (tool.dispatch !== true && !VIEW_JOB_TOOLS.has(tool.name)) return undefined;
  // The same two keys ext-apps' registerAppTool writes: the current one and the legacy flat one.
  return { ui: { resourceUri: JOBS_VIEW_URI }, [LEGACY_RESOURCE_URI_KEY]: JOBS_VIEW_URI };
}

/** The files the view is made of: the page, its style and script (web/), and ext-apps' App client. */
export interface ViewFiles {
  page: string;
  style: string;
  /** The script; the modules it imports (`./x.js` beside it, e.g. web/format.js, the dashboard's too) go in with it. */
  script: string;
  client: string;
}

/** This package's files: web/ at its root (found from src/tools or dist/src/tools), ext-apps' bundled client. */
export function packageViewFiles(): ViewFiles {
  const here = path.dirname(fileURLToPath(import.meta.url));
  let root = here;
  while (!existsSync(path.join(root, 'package.json'))) {
    if (path.dirname(root) === root) throw new Error(`no package.json above ${here}`);
    root = path.dirname(root);
  }
  const web = path.join(root, 'web');
  return {
    page: path.join(web, 'jobs-view.html'),
    style: path.join(web, 'jobs-view.css'),
    script: path.join(web, 'jobs-view.js'),
    // Self-contained (the SDK and zod inside): the view needs no other file and no network.
    client: createRequire(import.meta.url).resolve('@modelcontextprotocol/ext-apps/app-with-deps'),
  };
}

/**
 * ext-apps' ESM bundle as an inline module that puts its exports on `globalThis.McpExtApps`
 * (an inline module cannot be imported from): its last statement is `export{local as name,…}`.
 */
export function clientAsGlobal(bundle: string): string {
  const exports = /export\s*\{([^}]*)\}\s*;?\s*$/.exec(bundle);
  if (!exports?.[1]) throw new Error('the ext-apps client does not end with its export list');
  const names = exports[1]
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => {
      const [local, exported] = part.split(/\s+as\s+/);
      return `${JSON.stringify(exported ?? local)}: ${local ?? ''}`;
    });
  return `${bundle.slice(0, exports.index)}\nglobalThis.McpExtApps = Object.freeze({ ${names.join(', ')} });\n`;
}

/** `import { a, b } from './x.js';`: the one form of import the view's own modules use. */
const LOCAL_IMPORT = /^import\s*\{[^}]*\}\s*from\s*'(\.\/[\w.-]+\.js)';?[ \t]*$/gm;
/** `export` before a declaration: dropped when the module goes inline. */
const EXPORTED = /^export\s+(?=(?:async\s+)?function\b|const\b|let\b|class\b)/gm;

/**
 * A module with each module it imports (`./x.js` beside it, and theirs) put in place of its import
 * line, once, their `export`s dropped: one inline module, since an inline module has no URL to
 * import beside. The modules share one scope: their top-level names must differ.
 */
export async function inlineImports(file: string, seen: Set<string> = new Set([file])): Promise<string> {
  const source = await readFile(file, 'utf8');
  const parts: string[] = [];
  let at = 0;
  for (const match of source.matchAll(LOCAL_IMPORT)) {
    const imported = path.join(path.dirname(file), match[1] ?? '');
    parts.push(source.slice(at, match.index));
    if (!seen.has(imported)) {
      seen.add(imported);
      parts.push((await inlineImports(imported, seen)).replace(EXPORTED, ''));
    }
    at = match.index + match[0].length;
  }
  const code = parts.join('') + source.slice(at);
  // Any other import or export (a package, `export { … }`, a default) has no place in one inline module.
  if (/^\s*(import|export)\b/m.test(code.replace(EXPORTED, '')))
    throw new Error(`${path.basename(file)} has an import or export the view cannot inline`);
  return code;
}

/** Text that goes inside an inline <script>: only `</script` could end it early. */
function scriptText(js: string): string {
  if (js.includes('<!--')) throw new Error('an inline script may not contain "<!--"');
  // `<\/script` reads the same in a string, a template or a regular expression.
  return js.replace(/<\/script/gi, '<\\/script');
}

/** Puts `text` where `tag` is in the page: exactly one tag, replaced (a function, so `$` in the text stays). */
function inline(page: string, tag: RegExp, text: string): string {
  const found = page.match(new RegExp(tag.source, 'g')) ?? [];
  if (found.length !== 1) throw new Error(`the view's page has ${found.length} ${tag.source} tag(s), not one`);
  return page.replace(tag, () => text);
}

/** The view as one HTML document: its style, ext-apps' client and its script inlined, nothing left to load. */
export async function assembleJobsView(files: ViewFiles): Promise<string> {
  const read = (file: string): Promise<string> => readFile(file, 'utf8');
  const [page, style, script, client] = await Promise.all([
    read(files.page),
    read(files.style),
    inlineImports(files.script),
    read(files.client),
  ]);
  if (/<\/style/i.test(style)) throw new Error('the view\'s style may not contain "</style"');
  let html = inline(page, /<link rel="stylesheet" href="jobs-view\.css"\s*\/?>/, `<style>\n${style}</style>`);
  html = inline(
    html,
    /<script type="module" src="ext-apps\.js"><\/script>/,
    `<script type="module">\n${scriptText(clientAsGlobal(client))}</script>`,
  );
  return inline(
    html,
    /<script type="module" src="jobs-view\.js"><\/script>/,
    `<script type="module">\n${scriptText(script)}</script>`,
  );
}

/**
 * Serves the view as a resource (resources/list, resources/read; no templates). Its files are
 * read on the first resources/read, not before: a server that is never asked for it reads nothing.
 */
export function serveJobsView(server: Server, log: Logger, files: () => ViewFiles = packageViewFiles): void {
  let html: Promise<string> | undefined;
  server.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: [JOBS_VIEW_RESOURCE] }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({ resourceTemplates: [] }));
  server.setRequestHandler(ReadResourceRequestSchema, async (request): Promise<ReadResourceResult> => {
    const { uri } = request.params;
    // -32002: the spec's "resource not found".
    if (uri !== JOBS_VIEW_URI) throw new McpError(-32002, `Resource not found: ${uri}`, { uri });
    let text: string;
    try {
      // A failed read is tried again on the next request (the files may have been put back).
      html ??= Promise.resolve()
        .then(() => assembleJobsView(files()))
        .catch((error: unknown) => {
          html = undefined;
          throw error;
        });
      text = await html;
    } catch (error) {
      log.warn(`jobs view: ${String(error)}`);
      throw new McpError(ErrorCode.InternalError, `The jobs view could not be read: ${String(error)}`);
    }
    return { contents: [{ uri, mimeType: MCP_APP_MIME_TYPE, text, _meta: { ui: RESOURCE_UI_META } }] };
  });
}
