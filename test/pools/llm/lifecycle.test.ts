import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { connectInMemory, repoRoot, testConfig, textOf } from '../../helpers/client.js';
import { llamaAvailable, llamaMissing } from '../../helpers/llama.js';
import { freePort } from '../../helpers/net.js';

const cleanups = cleanupsAfterEach();
const kit = path.resolve(repoRoot, '..', 'shared', 'llama');

describe('model lifecycle answers', () => {
  // The kit's router spawns its child through the bundled loader with the router's arguments, and
  // the loader refuses them: every load fails with exit code 1. That is the failure a user must see.
  it.skipIf(!llamaAvailable)(
    'says clearly that the real router-mode llama-server failed to load the model (its child exited 1)',
    async () => {
      const port = await freePort();
      const server = execa(
        path.join(kit, 'llama-server'),
        [
          '--models-dir',
          path.join(kit, 'models'),
          '--no-models-autoload',
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '-t',
          '1',
          '--no-webui',
        ],
        { reject: false, stdin: 'ignore', forceKillAfterDelay: 5000 },
      );
      cleanups.push(async () => {
        server.kill('SIGTERM');
        await server;
      });
      const url = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 30_000;
      for (;;) {
        const healthy = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (healthy) break;
        if (Date.now() > deadline || server.exitCode !== null) throw new Error('llama-server router did not start');
        await sleep(100);
      }
      const config = await testConfig((c) => {
        c.llm.endpoints = [{ name: 'router', url, concurrency: 4, models: [], flavor: 'openai' }];
        c.llm.requestTimeoutSeconds = 30;
      });
      const c = await connectInMemory(config);
      cleanups.push(() => c.close());
      const reply = await c.call('lmstudio_models', { action: 'load', model: 'tiny' });
      expect(reply.isError).toBe(true);
      expect(textOf(reply)).toMatch(
        /MODEL_NOT_LOADED: llama-server on router could not load tiny: .*exited with code 1/,
      );
    },
    60_000,
  );
  if (!llamaAvailable) it.skip(llamaMissing, () => {});
});
