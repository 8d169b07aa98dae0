import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  getMcpConfigForManifest,
  type McpbManifestAny,
  type McpbUserConfigValues,
  unpackExtension,
} from '@anthropic-ai/mcpb';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle, productionPackages } from '../.ci/bundle.mjs';
import { startHttpServer } from './fixtures/http-server.js';
import { LmStudioDouble } from './fixtures/lmstudio-double.js';
import { cleanupsAfterEach, fileTree } from './helpers/cleanup.js';
import { jobIdOf, makeTempDir, repoRoot, textOf } from './helpers/client.js';
import { collectAll } from './helpers/collect.js';

/**
 * The Claude Desktop bundle (.ci/bundle.mjs, `npm run bundle`), built from the compiled dist/ (`npm
 * test` compiles first), unpacked, and started as Claude Desktop starts it: the manifest's
 * mcp_config with `${__dirname}` and `${user_config.*}` substituted by mcpb's own
 * getMcpConfigForManifest, the function Claude Desktop uses.
 */
const run = promisify(execFile);
const mcpbCli = path.join(repoRoot, 'node_modules', '@anthropic-ai', 'mcpb', 'dist', 'cli', 'cli.js');
const cleanups = cleanupsAfterEach();

let work = '';
let installed = '';
let manifest: McpbManifestAny;
let bundleBytes = 0;

beforeAll(async () => {
  work = await makeTempDir('monitor-bundle-');
  // Packing compresses ~30 MB: slow on a busy 2-core machine.
  const built = await buildBundle({ out: path.join(work, 'monitor-mcp.mcpb') });
  bundleBytes = built.bytes;
  installed = path.join(work, 'installed');
  expect(await unpackExtension({ mcpbPath: built.file, outputDir: installed, silent: true })).toBe(true);
  manifest = JSON.parse(await readFile(path.join(installed, 'manifest.json'), 'utf8')) as McpbManifestAny;
}, 300_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface Started {
  client: Client;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
  stderr(): string;
}

/** The server as Claude Desktop starts it for `userConfig`, in a home of its own (no state of this machine touched). */
async function launch(userConfig: McpbUserConfigValues): Promise<Started> {
  const home = await makeTempDir('monitor-bundle-home-');
  cleanups.push(() => rm(home, { recursive: true, force: true }));
  const config = await getMcpConfigForManifest({
    manifest,
    extensionPath: installed,
    systemDirs: {
      HOME: home,
      DESKTOP: path.join(home, 'Desktop'),
      DOCUMENTS: path.join(home, 'Documents'),
      DOWNLOADS: path.join(home, 'Downloads'),
    },
    userConfig,
    pathSeparator: path.sep,
  });
  if (!config) throw new Error('getMcpConfigForManifest gave no config: a required setting is missing');
  const userEnv = {
    HOME: home,
    USERPROFILE: home,
    XDG_STATE_HOME: path.join(home, '.local', 'state'),
    XDG_CONFIG_HOME: path.join(home, '.config'),
    LOCALAPPDATA: path.join(home, 'AppData', 'Local'),
    APPDATA: path.join(home, 'AppData', 'Roaming'),
  };
  const transport = new StdioClientTransport({
    // Claude Desktop runs `node` with the Node.js it ships; here, the one running the tests.
    command: config.command === 'node' ? process.execPath : config.command,
    args: config.args ?? [],
    env: { ...userEnv, ...config.env },
    // Claude Desktop may start servers in the filesystem root: the picked folders are all that is allowed.
    cwd: path.parse(home).root,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const client = new Client({ name: 'claude-desktop-like', version: '0.0.0' });
  cleanups.push(() => client.close());
  try {
    await client.connect(transport);
  } catch (error) {
    throw new Error(`the bundled server did not start: ${String(error)}\n${stderr}`);
  }
  return {
    client,
    call: async (name, args) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult,
    stderr: () => stderr,
  };
}

describe('the Claude Desktop bundle', () => {
  it('passes mcpb validate, holds the production dependencies only, and names an entry point it holds', async () => {
    const { stdout } = await run(process.execPath, [mcpbCli, 'validate', path.join(installed, 'manifest.json')], {
      timeout: 60_000,
    });
    expect(stdout).toContain('Manifest schema validation passes!');
    expect(bundleBytes).toBeLessThan(15 * 1024 * 1024);
    expect(existsSync(path.join(installed, manifest.server.entry_point))).toBe(true);
    for (const folder of ['workers', 'python', 'web'])
      expect(existsSync(path.join(installed, folder)), folder).toBe(true);
    const lock = JSON.parse(await readFile(path.join(repoRoot, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([where, entry]) => where.startsWith('node_modules/') && entry.dev === true)
      .map(([where]) => where);
    expect(devOnly).toContain('node_modules/@anthropic-ai/mcpb');
    expect(devOnly.filter((where) => existsSync(path.join(installed, where)))).toEqual([]);
    const production = productionPackages();
    expect(production).toContain('node_modules/@modelcontextprotocol/sdk');
    expect(production.filter((where) => !existsSync(path.join(installed, where, 'package.json')))).toEqual([]);
    // Nothing above the unpacked bundle could lend it a package: it runs on its own node_modules.
    const above: string[] = [];
    for (let dir = path.dirname(installed); dir !== path.dirname(dir); dir = path.dirname(dir))
      if (existsSync(path.join(dir, 'node_modules'))) above.push(dir);
    expect(above).toEqual([]);
  }, 60_000);

  it('starts as the manifest says with every setting filled in: folders, LLM endpoints with the token, HTTP hosts', async () => {
    const first = await fileTree({ 'a.py': 'x = 1\n' }, cleanups, 'monitor-bundle-a-');
    const second = await fileTree(
      { 'notes.py': '# TODO: split\ndef f():\n    return 1\n\n\nclass C:\n    pass\n' },
      cleanups,
      'monitor-bundle-b-',
    );
    const double = await LmStudioDouble.start({ token: 'sk-lm-bundle-test' });
    cleanups.push(() => double.close());
    const api = await startHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    cleanups.push(() => api.close());
    const server = await launch({
      allowed_directories: [first, second],
      // An LM Studio not on port 1234 is marked #lmstudio, so it gets the token.
      llm_endpoints: `local=${double.url}#lmstudio`,
      lm_api_token: 'sk-lm-bundle-test',
      http_allow_hosts: api.hostEntry,
      http_allow_private: true,
    });

    const { tools } = await server.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual((manifest.tools ?? []).map((t) => t.name).sort());
    const prompts = server.client.getServerCapabilities()?.prompts ? (await server.client.listPrompts()).prompts : [];
    expect(prompts.map((p) => p.name).sort()).toEqual((manifest.prompts ?? []).map((p) => p.name).sort());

    // A bundled worker over a file of the second folder picked.
    const stats = await server.call('run_script_batch', {
      worker: 'code_stats.py',
      inputs: [{ args: ['notes.py'] }],
      cwd: second,
    });
    expect(stats.isError, textOf(stats)).toBeFalsy();
    const statsRun = await collectAll(server, jobIdOf(stats));
    expect(statsRun.job.state, server.stderr()).toBe('succeeded');
    expect(JSON.stringify(statsRun.results[0]?.value?.json)).toContain('notes.py');

    // The local LLM named in the settings, with the token: a file of the picked folder sent to it.
    const llm = await server.call('lmstudio_complete', {
      template: 'Summarise {{path}}:\n{{content}}',
      files: [path.join(second, 'notes.py')],
      max_tokens: 16,
    });
    expect(llm.isError, textOf(llm)).toBeFalsy();
    const llmRun = await collectAll(server, jobIdOf(llm));
    expect(llmRun.job.state, JSON.stringify(llmRun.results)).toBe('succeeded');
    const chats = double.requests.filter((r) => r.path.endsWith('/chat/completions'));
    expect(chats.length).toBeGreaterThan(0);
    expect(chats.every((r) => r.authorization === 'Bearer sk-lm-bundle-test')).toBe(true);
    expect(chats[0]?.prompt).toContain('def f()');

    // An HTTP host from the settings, on this machine (private addresses allowed there).
    const http = await server.call('http_batch', { requests: [{ url: `${api.origin}/ping` }] });
    expect(http.isError, textOf(http)).toBeFalsy();
    const httpRun = await collectAll(server, jobIdOf(http));
    expect(httpRun.job.state, JSON.stringify(httpRun.results)).toBe('succeeded');
    expect(api.requests.map((r) => r.url)).toEqual(['/ping']);
  }, 120_000);

  it('starts with only the folders set: the optional settings left empty leave no placeholder behind', async () => {
    const picked = await fileTree({ 'a.py': 'x = 1\n' }, cleanups, 'monitor-bundle-only-');
    const outside = await fileTree({ 'b.py': 'y = 2\n' }, cleanups, 'monitor-bundle-outside-');
    // Without the required folders Claude Desktop starts nothing: it asks for them first.
    expect(
      await getMcpConfigForManifest({
        manifest,
        extensionPath: installed,
        systemDirs: {},
        userConfig: {},
        pathSeparator: path.sep,
      }),
    ).toBeUndefined();
    const config = await getMcpConfigForManifest({
      manifest,
      extensionPath: installed,
      systemDirs: {},
      userConfig: { allowed_directories: [picked] },
      pathSeparator: path.sep,
    });
    expect(JSON.stringify(config)).not.toContain('${');
    const server = await launch({ allowed_directories: [picked] });
    const inside = await server.call('run_script_batch', {
      worker: 'code_stats.py',
      inputs: [{ args: ['a.py'] }],
      cwd: picked,
    });
    expect(inside.isError, textOf(inside)).toBeFalsy();
    expect((await collectAll(server, jobIdOf(inside))).job.state).toBe('succeeded');
    const refused = await server.call('run_script_batch', {
      worker: 'code_stats.py',
      inputs: [{ args: ['b.py'] }],
      cwd: outside,
    });
    expect(textOf(refused)).toMatch(/^PATH_OUTSIDE_ROOT/);
    // No endpoint set: the default LM Studio, no HTTP host.
    const models = await server.call('lmstudio_models', {});
    expect(JSON.stringify(models.structuredContent)).toContain('127.0.0.1:1234');
  }, 120_000);
});
