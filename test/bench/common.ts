import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { repoRoot } from '../helpers/client.js';

export interface BenchRow {
  name: string;
  value: string;
  goal?: string;
  ok?: boolean;
}

export function printTable(title: string, rows: readonly BenchRow[]): void {
  const header = ['measure', 'result', 'goal', ''];
  const cells = rows.map((r) => [r.name, r.value, r.goal ?? '', r.ok === undefined ? '' : r.ok ? 'ok' : 'MISSED']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]): string => `| ${c.map((v, i) => v.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  process.stdout.write(
    `\n### ${title}\n\n${line(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n${cells.map(line).join('\n')}\n`,
  );
}

export interface BenchServer {
  client: Client;
  pid: number;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** The built server (or another build's `cli`) over stdio, exactly as a client starts it. */
export async function startServer(
  args: string[],
  env: Record<string, string> = {},
  cli = path.join(repoRoot, 'dist', 'src', 'cli.js'),
): Promise<BenchServer> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, '--log-level', 'warn', ...args],
    cwd: repoRoot,
    stderr: 'inherit',
    env: { ...getDefaultEnvironment(), ...env },
  });
  const client = new Client({ name: 'bench', version: '0' });
  await client.connect(transport);
  return {
    client,
    pid: transport.pid ?? 0,
    call: async (name, a) =>
      (await client.callTool({ name, arguments: a }, undefined, { timeout: 600_000 })) as CallToolResult,
    close: () => client.close(),
  };
}

/** Calls collect_results until every job is done; returns the last reply. */
export async function waitDone(server: BenchServer, jobId: string): Promise<CallToolResult> {
  for (;;) {
    const reply = await server.call('collect_results', { job_ids: [jobId], wait_seconds: 50, budget_tokens: 200 });
    if ((reply.structuredContent as { done?: boolean } | undefined)?.done) return reply;
  }
}

export const ms = (n: number): string => `${Math.round(n)} ms`;

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** The interpreter behind the `python3` shim (a pyenv shim costs ~300 ms a start): what the pool resolves to once, and what xargs gets too. */
export async function realPython(): Promise<string> {
  const { stdout } = await promisify(execFile)('python3', ['-c', 'import sys; print(sys.executable)']);
  return stdout.trim();
}
