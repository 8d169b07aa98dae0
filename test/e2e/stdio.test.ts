import { spawn } from 'node:child_process';
import { type AddressInfo, connect as connectTcp, createServer, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { jobIdOf, makeTempDir, repoRoot, textOf } from '../helpers/client.js';
import { alive, eventually, killQuietly, readPids, until } from '../helpers/scripts.js';

/** These tests run the built server (`npm test` compiles first), exactly as an MCP client starts it. */
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const stateDirs: string[] = [];

afterAll(async () => {
  await Promise.all(stateDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function newStateDir(): Promise<string> {
  const dir = await makeTempDir('monitor-e2e-');
  stateDirs.push(dir);
  return dir;
}

function serverArgs(stateDir: string, logLevel: 'debug' | 'info' | 'warn' = 'warn'): string[] {
  return [cli, '--state-dir', stateDir, '--workers-dir', fixtures, '--root', repoRoot, '--log-level', logLevel];
}

async function connect(
  stateDir: string,
  env?: Record<string, string>,
): Promise<{
  client: Client;
  transport: StdioClientTransport;
  call: (name: string, args: Record<string, unknown>) => Promise<CallToolResult>;
}> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: serverArgs(stateDir),
    cwd: repoRoot,
    stderr: 'pipe',
    ...(env ? { env: { ...getDefaultEnvironment(), ...env } } : {}),
  });
  const client = new Client({ name: 'e2e', version: '0.0.0' });
  await client.connect(transport);
  const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult;
  return { client, transport, call };
}

/** Runs hold.py on `server`: it and the child it forks sleep 60 s. Returns both pids once they run. */
async function startHold(server: Awaited<ReturnType<typeof connect>>): Promise<number[]> {
  const pidFile = path.join(await newStateDir(), 'hold.pids');
  const submitted = await server.call('run_script_batch', {
    worker: 'hold.py',
    inputs: [{ args: [pidFile] }],
    timeout_seconds: 120,
  });
  expect(submitted.isError).toBeFalsy();
  const pids = await readPids(pidFile, 20_000);
  expect(pids).toHaveLength(2);
  expect(pids.every(alive)).toBe(true);
  return pids;
}

describe('the built server over stdio', () => {
  it('lists every tool with a description, annotations and an input schema', async () => {
    const { client } = await connect(await newStateDir());
    try {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name).sort();
      for (const name of [
        'collect_results',
        'list_jobs',
        'cancel_job',
        'resume_job',
        'run_script_batch',
        'list_workers',
      ])
        expect(names).toContain(name);
      for (const tool of tools) {
        expect(tool.description?.length ?? 0).toBeGreaterThan(40);
        expect(tool.annotations).toBeDefined();
        const properties = (tool.inputSchema.properties ?? {}) as Record<string, { description?: string }>;
        for (const [field, schema] of Object.entries(properties))
          expect(schema.description, `${tool.name}.${field}`).toBeTruthy();
      }
      expect(client.getInstructions()).toMatch(/collect_results/);
      // The model receives every definition (name, description, input schema) with every request: kept lean.
      const size = tools.reduce(
        (n, t) => n + t.name.length + (t.description ?? '').length + JSON.stringify(t.inputSchema).length,
        0,
      );
      expect(size).toBeLessThanOrEqual(18_000);
      // Unknown arguments are refused, and the schema says so.
      for (const tool of tools) expect(tool.inputSchema.additionalProperties, tool.name).toBe(false);
    } finally {
      await client.close();
    }
  });

  it('writes nothing but JSON-RPC to stdout and exits when stdin closes', async () => {
    const stateDir = await newStateDir();
    // At debug level, so every log line the server can write is exercised: all of them must go to stderr.
    const child = spawn(process.execPath, serverArgs(stateDir, 'debug'), {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const send = (message: unknown): void => {
      child.stdin.write(JSON.stringify(message) + '\n');
    };
    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
    });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'list_workers', arguments: {} } });
    send({
      jsonrpc: '2.0',
      id: 4,
      method: 'tools/call',
      params: {
        name: 'run_script_batch',
        arguments: { worker: 'nap.py', inputs: [{ args: ['0', 'a'] }, { args: ['0', 'b'] }], wait_seconds: 20 },
      },
    });
    send({
      jsonrpc: '2.0',
      id: 5,
      method: 'tools/call',
      params: { name: 'collect_results', arguments: { job_ids: ['job_doesnotexist'] } },
    });
    await until(
      () => stdout.includes('"id":4') && stdout.includes('"id":5'),
      'the replies to requests 4 and 5',
      30_000,
    );
    child.stdin.end();
    const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)]);
    expect(code).toBe(0);
    const lines = stdout.split('\n').filter((l) => l.length > 0);
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const line of lines) {
      const message = JSON.parse(line) as { jsonrpc?: string };
      expect(message.jsonrpc).toBe('2.0');
    }
    const byId = new Map(
      lines.map((l) => JSON.parse(l) as { id?: number; result?: { isError?: boolean } }).map((m) => [m.id, m]),
    );
    expect(JSON.stringify(byId.get(4)?.result)).toMatch(/slept/);
    expect(byId.get(5)?.result?.isError).toBe(true);
    expect(JSON.stringify(byId.get(5)?.result)).toMatch(/JOB_NOT_FOUND/);
    // The logs were written, at info and debug level, to stderr.
    expect(stderr).toMatch(/^\[monitor-mcp\] info: ready/m);
    expect(stderr).toMatch(/^\[monitor-mcp\] debug: collect_results failed: JOB_NOT_FOUND/m);
    expect(stderr).toMatch(/^\[monitor-mcp\] info: shutting down \(stdin closed\)/m);
  });

  it('shuts down cleanly, not with a crash, when its stdout is gone (the client died)', async () => {
    const stateDir = await newStateDir();
    const child = spawn(process.execPath, serverArgs(stateDir, 'info'), {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await until(() => stderr.includes('ready'), 'the server to say it is ready');
    // Close our end of its stdout; its next reply then fails with EPIPE.
    child.stdout.destroy();
    child.stdin.write(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'gone', version: '0' } },
      }) + '\n',
    );
    const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') child.kill('SIGKILL');
    expect(code).toBe(0);
    expect(stderr).toContain('shutting down (stdout closed)');
    expect(stderr).not.toMatch(/EPIPE|Unhandled|at .*\.js:\d+/);
  });

  it(
    'keeps finished results across a SIGKILL; unfinished tasks are interrupted and resume finishes them',
    { timeout: 60_000 },
    async () => {
      const stateDir = await newStateDir();
      const first = await connect(stateDir);
      const inputs = [
        ...Array.from({ length: 4 }, (_, i) => ({ args: ['0', `quick${i}`] })),
        ...Array.from({ length: 3 }, (_, i) => ({ args: ['8', `slow${i}`] })),
      ];
      const submitted = await first.call('run_script_batch', { worker: 'nap.py', inputs, concurrency: 7 });
      const jobId = jobIdOf(submitted);
      // Wait until the quick tasks are recorded, while the slow ones still run.
      await until(async () => {
        const page = await first.call('collect_results', { job_ids: [jobId], wait_seconds: 0 });
        return (
          ((page.structuredContent as { jobs: Array<{ counts: { succeeded: number } }> }).jobs[0]?.counts.succeeded ??
            0) >= 4
        );
      }, 'the 4 quick tasks');
      const pid = first.transport.pid;
      expect(pid).toBeTypeOf('number');
      process.kill(pid ?? 0, 'SIGKILL');
      await first.client.close().catch(() => undefined);

      const second = await connect(stateDir);
      try {
        const jobs = await second.call('list_jobs', {});
        expect(textOf(jobs)).toMatch(new RegExp(`${jobId}.*interrupted`));
        const page = await second.call('collect_results', { job_ids: [jobId], wait_seconds: 0 });
        const structured = page.structuredContent as {
          jobs: Array<{ counts: Record<string, number> }>;
          results: Array<{ index: number; state: string; value?: { json?: { label?: string } } }>;
        };
        expect(structured.jobs[0]?.counts).toMatchObject({ succeeded: 4, interrupted: 3 });
        expect(structured.results.map((r) => r.value?.json?.label).sort()).toEqual([
          'quick0',
          'quick1',
          'quick2',
          'quick3',
        ]);

        const resumed = await second.call('resume_job', { job_id: jobId, wait_seconds: 30 });
        expect(resumed.isError).toBeFalsy();
        const final = await second.call('collect_results', { job_ids: [jobId], wait_seconds: 30, merge: 'json' });
        const done = final.structuredContent as {
          jobs: Array<{ state: string; counts: Record<string, number> }>;
          merged: Array<{ output: { label: string } }>;
        };
        expect(done.jobs[0]?.state).toBe('succeeded');
        expect(done.jobs[0]?.counts).toMatchObject({ succeeded: 7, interrupted: 0 });
        expect(done.merged.map((m) => m.output.label).sort()).toEqual([
          'quick0',
          'quick1',
          'quick2',
          'quick3',
          'slow0',
          'slow1',
          'slow2',
        ]);
      } finally {
        await second.client.close();
      }
    },
  );

  it(
    'stops the worker process groups a SIGKILLed server left running when the next server starts',
    { timeout: 60_000 },
    async () => {
      const stateDir = await newStateDir();
      // Workers started directly by the server: nothing but the next start can end them.
      const first = await connect(stateDir, { MONITOR_SPAWN_HELPER: '0' });
      const pids = await startHold(first);
      try {
        process.kill(first.transport.pid ?? 0, 'SIGKILL');
        await first.client.close().catch(() => undefined);
        await sleep(300);
        expect(pids.every(alive), 'a SIGKILLed server cannot end its workers').toBe(true);

        const second = await connect(stateDir);
        try {
          expect(await eventually(() => !pids.some(alive), 5000)).toBe(true);
        } finally {
          await second.client.close();
        }
      } finally {
        for (const pid of pids) killQuietly(pid);
      }
    },
  );

  it(
    "with the spawn helper (the default on Linux), a SIGKILLed server's workers end at once: the helper sees the server go",
    { timeout: 60_000 },
    async () => {
      const first = await connect(await newStateDir());
      const pids = await startHold(first);
      try {
        process.kill(first.transport.pid ?? 0, 'SIGKILL');
        await first.client.close().catch(() => undefined);
        await until(() => !pids.some(alive), 'the helper to end the workers of its dead server', 20_000);
      } finally {
        for (const pid of pids) killQuietly(pid);
      }
    },
  );

  it(
    'ends, when it shuts down, what its tasks started, even a descendant that left the process group',
    { timeout: 60_000 },
    async () => {
      const stateDir = await newStateDir();
      const pidDir = await newStateDir();
      const server = await connect(stateDir);
      const pidFile = path.join(pidDir, 'escaped.pid');
      const submitted = await server.call('run_script_batch', {
        worker: 'escape_group.py',
        inputs: [{ args: [pidFile, '60'] }],
        timeout_seconds: 120,
      });
      expect(submitted.isError).toBeFalsy();
      const [escaped = 0] = await readPids(pidFile, 20_000);
      try {
        expect(alive(escaped)).toBe(true);
        // The client going away closes the server's stdin: the server shuts down.
        await server.client.close();
        await until(() => !alive(escaped), 'the escaped descendant to be ended at shutdown', 20_000);
      } finally {
        killQuietly(escaped);
      }
    },
  );
});

describe('the built server with lines that are not JSON-RPC or over the size limit', () => {
  /** The server over a raw child process: lines in, replies by id out, stderr kept. */
  async function rawServer(extraArgs: string[] = []): Promise<{
    write: (line: string) => void;
    reply: (
      id: number | string | null,
    ) => { id?: unknown; result?: unknown; error?: { code: number; message: string } } | undefined;
    replies: () => Array<{ id?: unknown; result?: unknown; error?: { code: number; message: string } }>;
    stderr: () => string;
    end: () => Promise<number | null | 'timeout'>;
  }> {
    const child = spawn(process.execPath, [...serverArgs(await newStateDir(), 'info'), ...extraArgs], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const replies = (): Array<{ id?: unknown; result?: unknown; error?: { code: number; message: string } }> =>
      stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { id?: unknown });
    child.stdin.write(
      `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } })}\n`,
    );
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
    await until(() => replies().some((r) => r.id === 1), 'the reply to initialize');
    return {
      write: (line) => {
        child.stdin.write(`${line}\n`);
      },
      reply: (id) => replies().find((r) => r.id === id),
      replies,
      stderr: () => stderr,
      end: async () => {
        child.stdin.end();
        const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
        if (code === 'timeout') child.kill('SIGKILL');
        return code;
      },
    };
  }

  it(
    'answers an 11 MiB line over a 10 MiB limit with an error carrying its id, then keeps serving and exits 0',
    { timeout: 60_000 },
    async () => {
      const server = await rawServer(['--max-message-mb', '10']);
      // 11,500 inputs of ~1 KB, written as the SDK's clients write a request: its id last.
      const inputs = Array.from({ length: 11_500 }, (_, i) => ({ args: ['0', `${i}:${'x'.repeat(1000)}`] }));
      const line = JSON.stringify({
        method: 'tools/call',
        params: { name: 'run_script_batch', arguments: { worker: 'nap.py', inputs } },
        jsonrpc: '2.0',
        id: 2,
      });
      expect(line.length).toBeGreaterThan(11 * 1024 * 1024);
      server.write(line);
      await until(() => server.reply(2) !== undefined, 'the error reply to the oversize request', 30_000);
      const error = server.reply(2)?.error;
      expect(error?.code).toBe(-32600);
      expect(error?.message).toMatch(/10 MiB size limit/);
      expect(error?.message).toMatch(/inputs_file/);
      expect(error?.message).toMatch(/--max-message-mb/);
      server.write(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }));
      await until(() => server.reply(3) !== undefined, 'the tools/list after it');
      expect(JSON.stringify(server.reply(3)?.result)).toContain('run_script_batch');
      expect(await server.end()).toBe(0);
      expect(server.stderr()).toMatch(/^\[monitor-mcp\] warn: skipping a message over the 10 MiB limit/m);
      expect(server.stderr()).toMatch(/shutting down \(stdin closed\)/);
    },
  );

  it(
    'answers garbage, batches, a wrong version and a null id with -32700/-32600, serves an 11 MiB message under the default limit, and logs each rejected line',
    { timeout: 60_000 },
    async () => {
      const server = await rawServer();
      server.write('this is not json');
      server.write(`[${JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'ping' })}]`);
      server.write(JSON.stringify({ jsonrpc: '1.0', id: 11, method: 'ping' }));
      server.write(JSON.stringify({ jsonrpc: '2.0', id: null, method: 'ping' }));
      // An invalid notification is not answered, only logged.
      server.write(JSON.stringify({ jsonrpc: '1.0', method: 'notifications/initialized' }));
      // Over the SDK's old 10 MiB read buffer, under the default 64 MiB limit: served.
      server.write(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 12,
          method: 'ping',
          params: { _meta: { pad: 'p'.repeat(11 * 1024 * 1024) } },
        }),
      );
      await until(() => server.reply(12) !== undefined, 'the reply to the 11 MiB ping', 30_000);
      expect(server.reply(12)).toEqual({ jsonrpc: '2.0', id: 12, result: {} });
      expect(server.reply(11)?.error?.code).toBe(-32600);
      const anonymous = server.replies().filter((r) => r.id === null);
      expect(anonymous.map((r) => r.error?.code)).toEqual([-32700, -32600, -32600]);
      expect(anonymous[1]?.error?.message).toMatch(/batch/);
      expect(anonymous[2]?.error?.message).toMatch(/"id" must be a string or an integer/);
      // initialize, 3 with no id, 11 and 12: the notification got nothing.
      expect(server.replies()).toHaveLength(6);
      expect(await server.end()).toBe(0);
      const rejected = server
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('[monitor-mcp] warn: rejected an input line'));
      expect(rejected).toHaveLength(5);
      expect(rejected.filter((l) => l.includes('(not answered)'))).toHaveLength(1);
      expect(rejected[0]).toContain('"this is not json"');
    },
  );

  it('exits 1, after the normal shutdown, when reading stdin fails', async () => {
    // stdin is a TCP connection that the other end resets: the server's read fails with ECONNRESET.
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
    const stdin = connectTcp((listener.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((resolve) => stdin.once('connect', resolve));
    const peer = await accepted;
    try {
      const child = spawn(process.execPath, serverArgs(await newStateDir(), 'info'), {
        cwd: repoRoot,
        stdio: [stdin, 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await until(() => stderr.includes('ready'), 'the server to say it is ready');
      peer.resetAndDestroy();
      const code = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') child.kill('SIGKILL');
      expect(code).toBe(1);
      expect(stderr).toMatch(/^\[monitor-mcp\] error: reading the input failed: read ECONNRESET/m);
      expect(stderr).toMatch(/shutting down \(stdin failed\)/);
    } finally {
      stdin.destroy();
      peer.destroy();
      listener.close();
    }
  });
});
