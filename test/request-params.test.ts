import { spawn } from 'node:child_process';
import path from 'node:path';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type MonitorServer } from '../src/server.js';
import { rm } from 'node:fs/promises';
import { makeTempDir, repoRoot, testConfig, testProcesses } from './helpers/client.js';
import { until } from './helpers/scripts.js';

interface Answer {
  id: number;
  result?: unknown;
  error?: { code: number; message: string };
}

/** A server spoken to by hand over the in-memory transport, as a client that sends anything would. */
describe('requests with wrongly typed params', () => {
  let app: MonitorServer;
  let stateDir: string;
  let client: InMemoryTransport;
  const answers = new Map<number, Answer>();
  const waiting = new Map<number, (answer: Answer) => void>();
  let nextId = 1;

  const request = (method: string, params: unknown): Promise<Answer> => {
    const id = nextId++;
    const answered = new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${method} within 10 s`)), 10_000);
      waiting.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
    });
    return client.send({ jsonrpc: '2.0', id, method, params } as JSONRPCMessage).then(() => answered);
  };

  beforeAll(async () => {
    const config = await testConfig();
    stateDir = config.stateDir;
    app = createServer(config, { processes: testProcesses });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    client = clientSide;
    await app.server.connect(serverSide);
    client.onmessage = (message) => {
      const answer = message as unknown as Answer;
      answers.set(answer.id, answer);
      waiting.get(answer.id)?.(answer);
    };
    await client.start();
    const init = await request('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'by-hand', version: '0' },
    });
    expect(init.error).toBeUndefined();
    await client.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }, 30_000);
  afterAll(async () => {
    await client.close();
    await app.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  it.each([
    ['tools/call', { name: 'list_jobs', arguments: [] }, 'arguments must be an object (got an array)'],
    ['tools/call', { name: 'list_jobs', arguments: 'x' }, 'arguments must be an object (got a string)'],
    ['tools/call', { name: 5 }, 'name must be a string (got a number)'],
    ['prompts/get', { name: 3 }, 'name must be a string (got a number)'],
    ['prompts/get', { name: 'x', arguments: [] }, 'arguments must be an object (got an array)'],
    ['resources/read', { uri: [] }, 'uri must be a string (got an array)'],
    ['tools/list', { cursor: 5 }, 'cursor must be a string (got a number)'],
    ['logging/setLevel', { level: 'zzz' }, 'level must be one of "debug"'],
  ])('%s with %j answers -32602 saying what is wrong', async (method, params, says) => {
    const answer = await request(method, params);
    expect(answer.error?.code).toBe(-32602);
    expect(answer.error?.message).toContain(`Invalid params for ${method}: ${says}`);
    // One short line, not zod's issue list.
    expect(answer.error?.message).not.toContain('\n');
    expect(answer.error?.message.length).toBeLessThan(300);
  });

  it('still answers well-formed requests, and a wrong tool argument as a tool error', async () => {
    const listed = await request('tools/call', { name: 'list_jobs', arguments: {} });
    expect(listed.error).toBeUndefined();
    const wrong = await request('tools/call', { name: 'list_jobs', arguments: { limit: 'many' } });
    expect(wrong.error).toBeUndefined();
    expect(wrong.result).toMatchObject({ isError: true });
  });
});

it('answers -32602 over stdio from the built server too', async () => {
  const stateDir = await makeTempDir();
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'src', 'cli.js'), '--state-dir', stateDir], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.resume();
    const send = (message: object): boolean => child.stdin.write(`${JSON.stringify(message)}\n`);
    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'by-hand', version: '0' } },
    });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_jobs', arguments: [] } });
    const answer = (): Answer | undefined =>
      out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Answer)
        .find((message) => message.id === 2);
    await until(() => answer() !== undefined, 'the answer to tools/call', 30_000, 50);
    expect(answer()?.error).toEqual({
      code: -32602,
      message: 'Invalid params for tools/call: arguments must be an object (got an array).',
    });
  } finally {
    child.stdin.end();
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    await rm(stateDir, { recursive: true, force: true });
  }
}, 60_000);
