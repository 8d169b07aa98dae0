import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { repoRoot } from './client.js';
import { freePort } from './net.js';

/** The real llama.cpp server kit shipped beside the repository (CI has it). */
const kit = path.resolve(repoRoot, '..', 'shared', 'llama');
const binary = path.join(kit, 'llama-server');
const model = path.join(kit, 'models', 'tiny.gguf');

/** True where the kit runs: its binary and model are there, on x86-64 Linux. */
export const llamaAvailable =
  existsSync(binary) && existsSync(model) && process.platform === 'linux' && process.arch === 'x64';
export const llamaMissing = `the real llama-server needs ${binary} and ${model} (x86-64 Linux); they are not here`;

export interface LlamaServer {
  url: string;
  process: ResultPromise;
  /** The last lines it wrote on stderr (for error messages). */
  stderr(): string;
  stop(): Promise<void>;
}

export interface LlamaOptions {
  /** Total context, split across the slots (default 8192). */
  context?: number;
  /** Serve GET /metrics (Prometheus text: prompt tokens evaluated, and more). */
  metrics?: boolean;
  /** More llama-server flags. */
  args?: readonly string[];
}

/** Starts llama-server with the tiny model (alias `tiny`) on a free port and waits until it is healthy. */
export async function startLlama(slots = 4, deadlineMs = 60_000, options: LlamaOptions = {}): Promise<LlamaServer> {
  const port = await freePort();
  const server = execa(
    binary,
    [
      '-m',
      model,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '-t',
      '1',
      '--parallel',
      String(slots),
      '-c',
      String(options.context ?? 8192),
      '--alias',
      'tiny',
      '--no-webui',
      ...(options.metrics ? ['--metrics'] : []),
      ...(options.args ?? []),
    ],
    {
      reject: false,
      stdin: 'ignore',
      forceKillAfterDelay: 5000,
    },
  );
  let stderr = '';
  server.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    server.kill('SIGTERM');
    await server;
  };
  try {
    // The first start unpacks the kit into its cache (a few seconds).
    await waitHealthy(url, server, deadlineMs);
  } catch (error) {
    await stop();
    throw new Error(`${String(error)}\n${stderr}`);
  }
  return { url, process: server, stderr: () => stderr, stop };
}

/** One counter of a server started with `metrics: true`, e.g. `prompt_tokens_total` (prompt tokens it evaluated, cached ones not counted). */
export async function llamaMetric(url: string, name: string): Promise<number> {
  const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await response.text();
  const line = text.split('\n').find((l) => l.startsWith(`llamacpp:${name} `));
  const value = Number(line?.split(' ')[1]);
  if (!Number.isFinite(value)) throw new Error(`llama-server /metrics has no llamacpp:${name}: ${text.slice(0, 300)}`);
  return value;
}

export interface RecordingProxy {
  url: string;
  /** The JSON bodies of the chat completions sent through it, in order of arrival. */
  chats: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** A pass-through in front of `target` (a llama-server) that keeps the chat requests' bodies: what the pool sent (id_slot, cache_prompt). */
export async function recordingProxy(target: string): Promise<RecordingProxy> {
  const chats: Array<Record<string, unknown>> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && req.url?.endsWith('/chat/completions'))
        chats.push(JSON.parse(body.toString()) as Record<string, unknown>);
      const headers: Record<string, string> = {};
      if (req.headers['content-type']) headers['content-type'] = req.headers['content-type'];
      fetch(`${target}${req.url ?? '/'}`, {
        method: req.method ?? 'GET',
        headers,
        ...(req.method === 'GET' || req.method === 'HEAD' ? {} : { body }),
        signal: AbortSignal.timeout(120_000),
      })
        .then(async (answer) => {
          const payload = Buffer.from(await answer.arrayBuffer());
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
          res.end(payload);
        })
        .catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    chats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls /health until 200, the process exits, or the deadline passes. */
async function waitHealthy(url: string, server: ResultPromise, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let exited = false;
  void server.then(
    () => (exited = true),
    () => (exited = true),
  );
  while (Date.now() < deadline && !exited) {
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) return;
    } catch {
      // Refused until the port opens.
    }
    await sleep(100);
  }
  throw new Error(
    exited ? 'llama-server exited before it was healthy' : `llama-server not healthy within ${deadlineMs} ms`,
  );
}
