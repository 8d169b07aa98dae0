import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { settleSpawned } from '../../../src/pools/script/launch.js';
import { DirectSpawner, type Spawner } from '../../../src/pools/script/spawner.js';
import { alive, killQuietly, until } from '../../helpers/scripts.js';
import { sh, useSpawnerFixture } from './spawning.js';

/** settleSpawned (launch.ts): when a worker's pipes count as done after it exits. */

const fixture = useSpawnerFixture();

/** 300 KB of output, the last of it still in the pipe when the worker exits, and a stray (outside the group) holding the pipes. */
const WORKER =
  'setsid sleep 30 </dev/null & echo $! >&2; head -c 300000 /dev/zero | tr "\\0" x; printf "end\\n"; printf "err-end\\n" >&2';

describe('settleSpawned', () => {
  for (const mode of ['relay', 'direct'] as const) {
    it(`keeps all a ${mode}-started worker wrote before it exited, without waiting for a stray's end of the pipes`, async () => {
      const spawner: Spawner = mode === 'relay' ? fixture.relay() : fixture.keep(new DirectSpawner());
      const child = await spawner.start(sh(fixture.dir, WORKER));
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      await child.exited;
      const exitedAt = Date.now();
      await settleSpawned(child);
      const waited = Date.now() - exitedAt;
      const stray = Number(Buffer.concat(err).toString('utf8').split('\n')[0]);
      try {
        expect(stray).toBeGreaterThan(1);
        expect(alive(stray)).toBe(true);
        const stdout = Buffer.concat(out).toString('latin1');
        expect(stdout.length).toBe(300_004);
        expect(createHash('sha256').update(stdout).digest('hex')).toBe(
          createHash('sha256')
            .update(`${'x'.repeat(300_000)}end\n`)
            .digest('hex'),
        );
        expect(Buffer.concat(err).toString('utf8')).toBe(`${stray}\nerr-end\n`);
        // Before: the 2 s drain was waited out, since the stray never closes the pipes.
        expect(waited).toBeLessThan(1500);
        expect(child.stdout.destroyed && child.stderr.destroyed).toBe(true);
      } finally {
        killQuietly(stray);
      }
      await until(() => !alive(stray), 'the stray to be gone');
    }, 20_000);
  }
});
