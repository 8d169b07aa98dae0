import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { parseConfig, type Config } from '../../src/registry.js';
import { processControl, type ProcessControl } from '../../src/processes.js';
import { createServer, type MonitorServer, type ServerDeps } from '../../src/server.js';

/** The repository root (works from both `test/` sources and compiled `dist/test/`). */
export const repoRoot = ((): string => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const up = here.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..';
  return path.resolve(here, up);
})();

export async function makeTempDir(prefix = 'monitor-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** A Config as the CLI would build it, with a fresh state dir; `edit` adjusts it further; `env` is what config parsing sees. */
export async function testConfig(
  edit: (config: Config) => void = () => {},
  argv: string[] = [],
  env: Readonly<Record<string, string | undefined>> = {},
): Promise<Config> {
  const stateDir = await makeTempDir('monitor-state-');
  const config = parseConfig({
    argv: ['--state-dir', stateDir, ...argv],
    env,
    home: stateDir,
    cpus: cpus().length,
    packageRoot: repoRoot,
    cwd: repoRoot,
  });
  edit(config);
  return config;
}

export interface Connected {
  client: Client;
  app: MonitorServer;
  config: Config;
  /** Calls a tool and returns its result; never throws on isError. */
  call(
    name: string,
    args?: Record<string, unknown>,
    options?: { onprogress?: (p: { progress: number; total?: number }) => void; signal?: AbortSignal },
  ): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** This test process's own ProcessControl, as the CLI builds it for the server. */
export const testProcesses: ProcessControl = processControl(process.pid, (pid, signal) => {
  process.kill(pid, signal);
});

/** A real SDK Client connected to createServer(config, deps) over the in-memory transport. */
export async function connectInMemory(config: Config, deps: ServerDeps = {}): Promise<Connected> {
  const app = createServer(config, { ...deps, processes: deps.processes ?? testProcesses });
  await app.start();
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await app.server.connect(serverTransport);
  const client = new Client({ name: 'monitor-test', version: '0.0.0' });
  await client.connect(clientTransport);
  return {
    client,
    app,
    config,
    async call(name, args = {}, options = {}) {
      const requestOptions: {
        timeout: number;
        onprogress?: (p: { progress: number; total?: number }) => void;
        signal?: AbortSignal;
      } = { timeout: 120_000 };
      if (options.onprogress) requestOptions.onprogress = options.onprogress;
      if (options.signal) requestOptions.signal = options.signal;
      return (await client.callTool({ name, arguments: args }, undefined, requestOptions)) as CallToolResult;
    },
    async close() {
      await client.close();
      await app.close();
      await rm(config.stateDir, { recursive: true, force: true });
    },
  };
}

/** The text of a tool result (all text parts joined). */
export function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

/** The job id a dispatch tool returned. */
export function jobIdOf(result: CallToolResult): string {
  const structured = result.structuredContent as { job_id?: unknown } | undefined;
  if (typeof structured?.job_id === 'string') return structured.job_id;
  const match = /job_[A-Za-z0-9_-]{22}/.exec(textOf(result));
  if (!match) throw new Error(`no job id in: ${textOf(result)}`);
  return match[0];
}
