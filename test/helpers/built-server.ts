import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { repoRoot } from './client.js';
import { alive, e2eWorkers, killQuietly, until } from './scripts.js';

/** The built server (`npm test` compiles first), as a client session starts it over stdio. */
export interface BuiltServer {
  pid: number;
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  /** A kill -9, as a crashing machine would; resolves once the process is gone. */
  kill(): Promise<void>;
  close(): Promise<void>;
}

/** Starts dist/src/cli.js on `stateDir` with the e2e fixture workers, the repo as its root. */
export async function startBuiltServer(stateDir: string): Promise<BuiltServer> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      path.join(repoRoot, 'dist', 'src', 'cli.js'),
      '--state-dir',
      stateDir,
      '--workers-dir',
      e2eWorkers,
      '--root',
      repoRoot,
      '--log-level',
      'warn',
    ],
    cwd: repoRoot,
    stderr: 'pipe',
  });
  const client = new Client({ name: 'built-server-test', version: '0.0.0' });
  await client.connect(transport);
  const pid = transport.pid ?? 0;
  return {
    pid,
    call: async (name, args = {}) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult,
    async kill() {
      killQuietly(pid);
      await until(() => !alive(pid), `server ${pid} to die`, 10_000);
      await client.close().catch(() => undefined);
    },
    close: () => client.close(),
  };
}
