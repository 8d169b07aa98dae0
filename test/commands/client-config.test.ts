import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { clientConfig, parseConfigCommand } from '../../src/commands/client-config.js';
import { platformFor } from '../../src/platform/index.js';
import { makeTempDir, repoRoot } from '../helpers/client.js';

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');

describe('monitor-mcp config', () => {
  it("writes each client's own format, with absolute paths, and no variables where the client expands none", () => {
    const paths = { node: '/usr/bin/node', cli: '/opt/monitor-mcp/dist/src/cli.js' };
    expect(clientConfig({ client: 'claude-code', ...paths }).json).toEqual({
      mcpServers: {
        monitor: {
          type: 'stdio',
          command: '/usr/bin/node',
          args: ['/opt/monitor-mcp/dist/src/cli.js'],
          env: { LM_API_TOKEN: '${LM_API_TOKEN:-}' },
        },
      },
    });
    expect(clientConfig({ client: 'claude-desktop', ...paths, root: '/home/u/p' }).json).toEqual({
      mcpServers: {
        monitor: { command: '/usr/bin/node', args: ['/opt/monitor-mcp/dist/src/cli.js', '--root', '/home/u/p'] },
      },
    });
    expect(clientConfig({ client: 'vscode', ...paths, root: '/home/u/p', name: 'mon' }).json).toEqual({
      servers: {
        mon: {
          type: 'stdio',
          command: '/usr/bin/node',
          args: ['/opt/monitor-mcp/dist/src/cli.js', '--root', '/home/u/p'],
        },
      },
    });
    expect(JSON.stringify(clientConfig({ client: 'cursor', ...paths, root: '/p' }).json)).not.toContain('${');
  });

  it("names Claude Desktop's config file on the system it runs on (macOS, Windows), or both where it has none", () => {
    const paths = { node: 'C:\\Program Files\\nodejs\\node.exe', cli: 'C:\\mm\\dist\\src\\cli.js' };
    const windowsFile = platformFor('win32', {}).folders(
      { APPDATA: 'C:\\Users\\ann\\AppData\\Roaming' },
      'C:\\Users\\ann',
    ).claudeDesktopConfig;
    expect(clientConfig({ client: 'claude-desktop', ...paths, desktopConfigFile: windowsFile }).where).toBe(
      'C:\\Users\\ann\\AppData\\Roaming\\Claude\\claude_desktop_config.json, then restart Claude Desktop',
    );
    const macFile = platformFor('darwin').folders({}, '/Users/ann').claudeDesktopConfig;
    expect(clientConfig({ client: 'claude-desktop', ...paths, desktopConfigFile: macFile }).where).toMatch(
      /^\/Users\/ann\/Library\/Application Support\/Claude\/claude_desktop_config\.json,/,
    );
    expect(platformFor('linux').folders({}, '/home/ann').claudeDesktopConfig).toBeUndefined();
    expect(clientConfig({ client: 'claude-desktop', ...paths }).where).toMatch(/macOS: .*Windows: /);
  });

  it('roots the clients that start servers elsewhere in this folder, and refuses an unknown client', () => {
    expect(parseConfigCommand(['--client', 'claude-desktop'], '/home/u/p')).toEqual({
      client: 'claude-desktop',
      root: '/home/u/p',
      name: undefined,
    });
    expect(parseConfigCommand(['--client=claude-code'], '/home/u/p').root).toBeUndefined();
    expect(parseConfigCommand(['--client', 'cursor', '--root', 'sub'], '/home/u/p').root).toBe('/home/u/p/sub');
    expect(() => parseConfigCommand(['--client', 'emacs'], '/')).toThrow(/Unknown client "emacs"/);
  });

  it('prints a Claude Desktop config that starts a working server as written', async () => {
    const project = await makeTempDir('monitor-config-');
    dirs.push(project);
    const { stdout, stderr } = await run(process.execPath, [cli, 'config', '--client', 'claude-desktop'], {
      cwd: project,
    });
    expect(stderr).toMatch(/claude_desktop_config\.json/);
    const entry = (JSON.parse(stdout) as { mcpServers: { monitor: { command: string; args: string[] } } }).mcpServers
      .monitor;
    expect(path.isAbsolute(entry.command) && path.isAbsolute(entry.args[0] ?? '')).toBe(true);
    // As Claude Desktop starts it: in "/", with a state dir of its own for this test.
    const client = new Client({ name: 'desktop-like', version: '0' });
    await client.connect(
      new StdioClientTransport({
        command: entry.command,
        args: [...entry.args, '--state-dir', path.join(project, 'state')],
        cwd: '/',
      }),
    );
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toContain('run_script_batch');
      const listed = await client.callTool({ name: 'list_workers', arguments: {} });
      expect(listed.isError).toBeFalsy();
    } finally {
      await client.close();
    }
  });
});
