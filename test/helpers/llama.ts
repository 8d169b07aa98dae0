import { existsSync } from 'node:fs';
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

/** Starts llama-server with the tiny model (alias `tiny`) on a free port and waits until it is healthy. */
export async function startLlama(slots = 4, deadlineMs = 60_000): Promise<LlamaServer> {
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
      '8192',
      '--alias',
      'tiny',
      '--no-webui',
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
