import path from 'node:path';
import { rm } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/registry.js';
import { createServer, type MonitorServer } from '../src/server.js';
import { collectAll } from './helpers/collect.js';
import { jobIdOf, repoRoot, testProcesses, textOf } from './helpers/client.js';
import { fixtureWorkers, scriptConfig } from './helpers/scripts.js';

/**
 * The server answers initialize and tools/list before it builds its kinds and recovers the state
 * directory (server-start.ts); these check that a tool call made before that recovery has finished
 * still sees every job an earlier server left there.
 */
interface Session {
  app: MonitorServer;
  client: Client;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** createServer over the in-memory transport; start() only when asked (the CLI calls it after connect). */
async function open(config: Config, start: boolean): Promise<Session> {
  const app = createServer(config, { processes: testProcesses, env: { PATH: process.env.PATH } });
  if (start) await app.start();
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await app.server.connect(serverSide);
  const client = new Client({ name: 'server-start-test', version: '0' });
  await client.connect(clientSide);
  return {
    app,
    client,
    call: async (name, args) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult,
    async close() {
      await client.close();
      await app.close();
    },
  };
}

let config: Config;
/** A job an earlier server ran to the end on config.stateDir. */
let earlier: string;

beforeAll(async () => {
  config = await scriptConfig();
  const first = await open(config, true);
  try {
    const submitted = await first.call('run_script_batch', {
      worker: 'echo.py',
      inputs: [{ args: ['one'] }, { args: ['two'] }],
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    earlier = jobIdOf(submitted);
    const { job } = await collectAll(first, earlier, { timeoutMs: 60_000 });
    expect(job.counts.succeeded).toBe(2);
  } finally {
    await first.close();
  }
}, 90_000);

afterAll(async () => {
  await rm(config.stateDir, { recursive: true, force: true });
});

describe('a server that has not recovered its state directory yet', () => {
  it('answers tools/list without building its kinds or engine', async () => {
    const session = await open(config, false);
    try {
      const { tools } = await session.client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['run_script_batch', 'list_jobs']));
      // Nothing built yet: the engine comes with the recovery.
      expect(() => session.app.engine).toThrow(/start\(\)/);
    } finally {
      await session.close();
    }
  });

  it("lists an earlier server's job and collects its results on a tool call that comes first", async () => {
    const session = await open(config, false);
    try {
      expect(() => session.app.engine).toThrow(/start\(\)/);
      const listed = await session.call('list_jobs', {});
      expect(listed.isError, textOf(listed)).toBeFalsy();
      const jobs = (listed.structuredContent as { jobs: Array<{ job_id: string; state: string }> }).jobs;
      expect(jobs).toContainEqual(expect.objectContaining({ job_id: earlier, state: 'succeeded' }));

      const { results, job } = await collectAll(session, earlier, { waitSeconds: 0, timeoutMs: 30_000 });
      expect(job.counts.succeeded).toBe(2);
      expect(results.map((r) => (r.value?.json as { args?: string[] } | undefined)?.args)).toEqual([['one'], ['two']]);
      // The call started the recovery; start() afterwards finds it done.
      await session.app.start();
      expect(session.app.engine.snapshotOf(earlier).counts.succeeded).toBe(2);
    } finally {
      await session.close();
    }
  });
});

describe('the built server over stdio', () => {
  it('answers a list_jobs sent right after initialize with the jobs an earlier server left', async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        path.join(repoRoot, 'dist', 'src', 'cli.js'),
        '--state-dir',
        config.stateDir,
        '--workers-dir',
        fixtureWorkers,
        '--log-level',
        'warn',
      ],
      cwd: repoRoot,
      stderr: 'pipe',
      env: getDefaultEnvironment(),
    });
    const client = new Client({ name: 'server-start-test', version: '0' });
    await client.connect(transport);
    try {
      // Sent together, as a client that connects in the background does: neither waits for the other.
      const [tools, listed] = await Promise.all([
        client.listTools(),
        client.callTool({ name: 'list_jobs', arguments: {} }, undefined, { timeout: 60_000 }),
      ]);
      expect(tools.tools.map((t) => t.name)).toContain('collect_results');
      const jobs = (listed.structuredContent as { jobs: Array<{ job_id: string }> }).jobs;
      expect(jobs.map((j) => j.job_id)).toContain(earlier);
      const collected = (await client.callTool(
        { name: 'collect_results', arguments: { job_ids: [earlier], wait_seconds: 0 } },
        undefined,
        { timeout: 60_000 },
      )) as CallToolResult;
      expect(collected.isError, textOf(collected)).toBeFalsy();
      expect((collected.structuredContent as { done: boolean }).done).toBe(true);
    } finally {
      await client.close();
    }
  }, 60_000);
});
