import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { INVALID_REQUEST, LineTransport, PARSE_ERROR, StreamError } from '../src/transport.js';
import { until } from './helpers/scripts.js';

interface Reply {
  jsonrpc: string;
  id: string | number | null;
  error?: { code: number; message: string };
}

/** A started transport over PassThrough streams, with everything it reports collected. */
async function open(maxMessageBytes = 1024): Promise<{
  transport: LineTransport;
  input: PassThrough;
  output: PassThrough;
  messages: JSONRPCMessage[];
  errors: Error[];
  logs: string[];
  closes: () => number;
  replies: () => Reply[];
}> {
  const input = new PassThrough();
  const output = new PassThrough();
  const logs: string[] = [];
  const transport = new LineTransport({
    input,
    output,
    maxMessageBytes,
    log: createLogger((line) => logs.push(line), 'debug'),
    fileArguments:
      "run_script_batch's inputs_file, lmstudio_complete's prompts_file or items_file, lmstudio_investigate's tasks_file, http_batch's requests_file",
  });
  const messages: JSONRPCMessage[] = [];
  const errors: Error[] = [];
  let closes = 0;
  transport.onmessage = (message) => messages.push(message);
  transport.onerror = (error) => errors.push(error);
  transport.onclose = () => (closes += 1);
  let written = '';
  output.setEncoding('utf8').on('data', (chunk: string) => (written += chunk));
  await transport.start();
  return {
    transport,
    input,
    output,
    messages,
    errors,
    logs,
    closes: () => closes,
    replies: () =>
      written
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Reply),
  };
}

const ping = (id: number | string): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' });

/** Writes to a stream, waiting for 'drain' when it says its buffer is full. */
async function write(stream: PassThrough, data: string | Buffer): Promise<void> {
  if (!stream.write(data)) await once(stream, 'drain');
}

describe('LineTransport', () => {
  it('hands valid requests, notifications and responses to onmessage, one per line', async () => {
    const t = await open();
    t.input.write(`${ping(1)}\n${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
    t.input.write(`${JSON.stringify({ jsonrpc: '2.0', id: 'r1', result: {} })}\n`);
    await until(() => t.messages.length === 3, 'three messages');
    expect(t.messages).toEqual([
      { jsonrpc: '2.0', id: 1, method: 'ping' },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', id: 'r1', result: {} },
    ]);
    expect(t.replies()).toEqual([]);
    expect(t.logs).toEqual([]);
  });

  it('joins a message split across many chunks, multi-byte characters included, and takes \\r\\n line ends', async () => {
    const t = await open();
    const line = Buffer.from(
      `${JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'é✓😀', arguments: {} } })}\r\n`,
    );
    // One byte at a time: every multi-byte character is cut in the middle.
    for (const byte of line) t.input.write(Buffer.from([byte]));
    t.input.write(`${ping(8)}\r\n`);
    await until(() => t.messages.length === 2, 'both messages');
    expect(t.messages[0]).toEqual({
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'é✓😀', arguments: {} },
    });
    expect(t.messages[1]).toEqual({ jsonrpc: '2.0', id: 8, method: 'ping' });
  });

  it('answers a line that is not JSON with -32700 and id null, logging an escaped preview', async () => {
    const t = await open();
    t.input.write('hello there\n');
    t.input.write(Buffer.from([0x00, 0x1b, 0x5b, 0x32, 0x4a, 0x7b, 0x0a]));
    await until(() => t.replies().length === 2, 'two replies');
    for (const reply of t.replies()) {
      expect(reply).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: PARSE_ERROR } });
      expect(reply.error?.message).toMatch(/^Parse error/);
    }
    expect(t.logs).toHaveLength(2);
    expect(t.logs[0]).toMatch(/^\[monitor-mcp\] warn: rejected an input line \(answered with -32700\).*"hello there"/);
    // The NUL and the terminal escape are shown escaped, never raw.
    expect(t.logs[1]).toContain('\\u0000\\u001b[2J{');
    expect(t.logs.join('')).not.toMatch(/[\u0000\u001b]/);
    expect(t.replies()[1]?.error?.message).not.toMatch(/[\u0000\u001b]/);
    expect(t.messages).toEqual([]);
  });

  it('answers a batch with -32600 and id null: batches are not supported', async () => {
    const t = await open();
    t.input.write(`[${ping(1)},${ping(2)}]\n`);
    await until(() => t.replies().length === 1, 'the reply');
    expect(t.replies()[0]).toMatchObject({ id: null, error: { code: INVALID_REQUEST } });
    expect(t.replies()[0]?.error?.message).toMatch(/batch/);
    expect(t.messages).toEqual([]);
  });

  it('answers an invalid request with -32600 and its id when the id is valid, else null', async () => {
    const t = await open();
    const lines = [
      { jsonrpc: '1.0', id: 5, method: 'ping' },
      { id: 6, method: 'ping' },
      { jsonrpc: '2.0', id: null, method: 'ping' },
      { jsonrpc: '2.0', id: 'abc', method: 'ping', extra: 1 },
      { jsonrpc: '2.0', id: 9, method: 42 },
      { jsonrpc: '2.0', id: { nested: 1 }, method: 'ping' },
      { foo: 'boo' },
      42,
    ];
    for (const line of lines) t.input.write(`${JSON.stringify(line)}\n`);
    await until(() => t.replies().length === lines.length, 'a reply to every line');
    const replies = t.replies();
    expect(replies.map((r) => r.id)).toEqual([5, 6, null, 'abc', 9, null, null, null]);
    for (const reply of replies) expect(reply.error?.code).toBe(INVALID_REQUEST);
    expect(replies[0]?.error?.message).toMatch(/"jsonrpc" must be "2.0", got "1.0"/);
    expect(replies[1]?.error?.message).toMatch(/"jsonrpc" must be "2.0", got nothing/);
    expect(replies[2]?.error?.message).toMatch(/"id" must be a string or an integer.*got null/);
    expect(replies[3]?.error?.message).toMatch(/unexpected member "extra"/);
    expect(replies[4]?.error?.message).toMatch(/"method" must be a string/);
    expect(t.logs.filter((l) => l.includes('rejected an input line'))).toHaveLength(lines.length);
    expect(t.messages).toEqual([]);
  });

  it('logs an invalid notification or response but does not answer it', async () => {
    const t = await open();
    t.input.write(`${JSON.stringify({ jsonrpc: '1.0', method: 'notifications/initialized' })}\n`);
    t.input.write(`${JSON.stringify({ jsonrpc: '2.0', id: 3, result: 'not an object' })}\n`);
    t.input.write(`${JSON.stringify({ jsonrpc: '2.0', id: 4, error: { code: 'x' } })}\n`);
    // A line that is answered: once its reply is out, the three before it were handled.
    t.input.write('garbage\n');
    await until(() => t.replies().length > 0, 'the reply to the garbage');
    expect(t.replies()).toEqual([
      expect.objectContaining({ id: null, error: expect.objectContaining({ code: PARSE_ERROR }) as unknown }),
    ]);
    expect(t.logs.filter((l) => l.includes('(not answered)'))).toHaveLength(3);
  });

  it('takes a line of exactly the limit and refuses one byte more', async () => {
    const t = await open(1024);
    const fill = (bytes: number, id: number): string => {
      const head = `{"jsonrpc":"2.0","id":${id},"method":"ping","params":{"_meta":{"pad":"`;
      const tail = '"}}}';
      return head + 'x'.repeat(bytes - head.length - tail.length) + tail;
    };
    expect(fill(1024, 1)).toHaveLength(1024);
    t.input.write(`${fill(1024, 1)}\n${fill(1025, 2)}\n`);
    await until(() => t.messages.length === 1 && t.replies().length === 1, 'one message and one reply');
    expect(t.messages[0]).toMatchObject({ id: 1, method: 'ping' });
    expect(t.replies()[0]).toMatchObject({ id: 2, error: { code: INVALID_REQUEST } });
  });

  it(
    'answers a 50 MiB line at once with its id, skips it without holding it, and serves the next line',
    { timeout: 60_000 },
    async () => {
      const t = await open(1024);
      await write(
        t.input,
        '{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"run_script_batch","arguments":{"inputs":"',
      );
      await write(t.input, 'x'.repeat(2048));
      // Answered while the line is still coming: the client's request fails now, not after the upload.
      await until(() => t.replies().length === 1, 'the reply to the oversize request');
      const reply = t.replies()[0];
      expect(reply).toMatchObject({ jsonrpc: '2.0', id: 42, error: { code: INVALID_REQUEST } });
      expect(reply?.error?.message).toContain('1024-byte size limit');
      expect(reply?.error?.message).toMatch(
        /run_script_batch's inputs_file, lmstudio_complete's prompts_file or items_file, lmstudio_investigate's tasks_file, http_batch's requests_file/,
      );
      expect(reply?.error?.message).toMatch(
        /--max-message-mb N, the MONITOR_MAX_MESSAGE_MB environment variable or "maxMessageMB"/,
      );

      const chunk = Buffer.alloc(64 * 1024, 'x');
      for (let sent = 0; sent < 50 * 1024 * 1024; sent += chunk.length) await write(t.input, chunk);
      await write(t.input, `"}}}\n${ping(43)}\n`);
      await until(() => t.messages.length === 1, 'the request after the oversize line');
      expect(t.messages[0]).toEqual({ jsonrpc: '2.0', id: 43, method: 'ping' });
      expect(t.replies()).toHaveLength(1);
      const warnings = t.logs.filter((l) => l.includes(' warn: '));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/skipping a message over the 1024-byte limit \(id 42\)/);
      // Only a short preview is logged, never the line.
      expect(t.logs.join('').length).toBeLessThan(2000);
    },
  );

  it("finds the id of an oversize line at its end, as the SDK's clients write it, not a nested one", async () => {
    const t = await open(1024);
    const pad = 'y'.repeat(5000);
    t.input.write(
      `{"method":"tools/call","params":{"id":999,"arguments":{"pad":"${pad}"}},"jsonrpc":"2.0","id":44}\r\n`,
    );
    t.input.write(`{"method":"tools/call","params":{"pad":"${pad}","id":998},"jsonrpc":"2.0"}\n`);
    t.input.write(`${ping(45)}\n`);
    await until(() => t.replies().length === 2 && t.messages.length === 1, 'two replies and the ping');
    expect(t.replies().map((r) => r.id)).toEqual([44, null]);
    expect(t.messages[0]).toMatchObject({ id: 45 });
  });

  it('waits for the output to drain when it is full, and does not pile up listeners', async () => {
    const input = new PassThrough();
    const output = new PassThrough({ highWaterMark: 1024 });
    const transport = new LineTransport({ input, output, maxMessageBytes: 1024, log: createLogger(() => {}) });
    await transport.start();
    const big: JSONRPCMessage = { jsonrpc: '2.0', id: 1, result: { text: 'z'.repeat(100_000) } };
    let settled = 0;
    const sends = Array.from({ length: 20 }, () => transport.send(big).then(() => (settled += 1)));
    // Nothing reads the output: a few turns of the event loop later, no send has completed.
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(0);
    expect(output.listenerCount('drain')).toBeLessThanOrEqual(1);
    let received = '';
    output.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    await Promise.all(sends);
    expect(settled).toBe(20);
    const lines = received.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(20);
    for (const line of lines) expect(JSON.parse(line)).toEqual(big);
  });

  it('reports an output error to onerror and closes, without throwing; later sends reject', async () => {
    const t = await open();
    const broken = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    t.output.destroy(broken);
    await until(() => t.closes() === 1, 'the close');
    expect(t.errors).toHaveLength(1);
    expect(t.errors[0]).toBeInstanceOf(StreamError);
    expect((t.errors[0] as StreamError).stream).toBe('output');
    expect((t.errors[0] as StreamError).cause).toBe(broken);
    await expect(t.transport.send({ jsonrpc: '2.0', id: 1, result: {} })).rejects.toThrow();
    expect(t.closes()).toBe(1);
  });

  it('reports a read error to onerror, then closes once', async () => {
    const t = await open();
    t.input.destroy(new Error('EIO'));
    await until(() => t.closes() === 1, 'the close');
    expect(t.errors.map((e) => e.message)).toEqual(['reading the input failed: EIO']);
    expect((t.errors[0] as StreamError).stream).toBe('input');
    await t.transport.close();
    expect(t.closes()).toBe(1);
  });

  it('calls onclose once when the input ends, logging a line left without its newline', async () => {
    const t = await open();
    t.input.end(`${ping(1)}\n{"jsonrpc":"2.0","id":2,`);
    await until(() => t.closes() === 1, 'the close');
    expect(t.messages).toHaveLength(1);
    expect(t.logs.join('')).toMatch(/ended in the middle of a line \(24 bytes without a newline\)/);
    await t.transport.close();
    expect(t.closes()).toBe(1);
  });

  it('stops reading when closed', async () => {
    const t = await open();
    await t.transport.close();
    expect(t.closes()).toBe(1);
    t.input.write(`${ping(1)}\n`);
    t.input.end();
    await once(t.input, 'finish');
    expect(t.messages).toEqual([]);
    expect(t.closes()).toBe(1);
    await expect(t.transport.start()).rejects.toThrow(/already started/);
  });
});
