import path from 'node:path';
import { MonitorError } from '../errors.js';

export const CLIENTS = ['claude-code', 'claude-desktop', 'cursor', 'vscode'] as const;
export type ClientName = (typeof CLIENTS)[number];

export interface ClientConfigOptions {
  client: ClientName;
  /** Absolute path of the node binary and of this package's built cli.js. */
  node: string;
  cli: string;
  /** The project folder paths must stay inside; required where the client starts servers in "/". */
  root?: string;
  /** The server's name in the client (default "monitor"). */
  name?: string;
  /** Claude Desktop's config file on this system, when it has one (macOS, Windows). */
  desktopConfigFile?: string | undefined;
}

export interface ClientConfig {
  /** Where the JSON goes, in a sentence for people. */
  where: string;
  json: Record<string, unknown>;
}

/**
 * A ready server entry for one client, with absolute paths, so nobody hand-edits one. Claude Code
 * expands `${VAR:-default}` (the LM Studio token comes from the user's environment); Claude
 * Desktop, Cursor and VS Code get no variables, and start servers outside the project, so they
 * get an explicit --root.
 */
export function clientConfig(options: ClientConfigOptions): ClientConfig {
  const name = options.name ?? 'monitor';
  const args = [options.cli, ...(options.root === undefined ? [] : ['--root', options.root])];
  switch (options.client) {
    case 'claude-code':
      return {
        where:
          "the project's .mcp.json (Claude Code asks once to approve it), or run: claude mcp add -s user monitor -- monitor-mcp",
        json: {
          mcpServers: {
            [name]: { type: 'stdio', command: options.node, args, env: { LM_API_TOKEN: '${LM_API_TOKEN:-}' } },
          },
        },
      };
    case 'claude-desktop':
      return {
        where: `${options.desktopConfigFile ?? 'claude_desktop_config.json (macOS: ~/Library/Application Support/Claude/, Windows: %APPDATA%\\Claude\\)'}, then restart Claude Desktop`,
        json: { mcpServers: { [name]: { command: options.node, args } } },
      };
    case 'cursor':
      return {
        where: '~/.cursor/mcp.json (every project) or .cursor/mcp.json in the project',
        json: { mcpServers: { [name]: { command: options.node, args } } },
      };
    case 'vscode':
      return {
        where: '.vscode/mcp.json in the workspace (VS Code\'s format: "servers", not "mcpServers")',
        json: { servers: { [name]: { type: 'stdio', command: options.node, args } } },
      };
  }
}

/** `monitor-mcp config --client NAME [--root DIR] [--name NAME]`, parsed. */
export function parseConfigCommand(
  argv: readonly string[],
  cwd: string,
): { client: ClientName; root: string | undefined; name: string | undefined } {
  let client: string | undefined;
  let root: string | undefined;
  let name: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = (argv[i] ?? '').split(/=(.*)/s);
    const value = inline ?? argv[++i];
    if (flag === '--client') client = value;
    else if (flag === '--root') root = value;
    else if (flag === '--name') name = value;
    else throw usage(`Unknown option ${flag ?? ''}.`);
    if (value === undefined) throw usage(`${flag} needs a value.`);
  }
  const known = CLIENTS.find((c) => c === client);
  if (known === undefined) throw usage(client === undefined ? 'Name the client.' : `Unknown client "${client}".`);
  // Claude Code starts a project's servers in the project; the others need to be told where it is.
  const resolvedRoot = root === undefined ? (known === 'claude-code' ? undefined : cwd) : path.resolve(cwd, root);
  return { client: known, root: resolvedRoot, name };
}

function usage(problem: string): MonitorError {
  return new MonitorError('INVALID_INPUT', problem, {
    hint: `monitor-mcp config --client ${CLIENTS.join('|')} [--root DIR] [--name NAME] prints that client's config (--root defaults to this folder, except for claude-code).`,
  });
}
