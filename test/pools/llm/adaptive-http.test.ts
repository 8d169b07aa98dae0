import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.js';
import type { Logger } from '../../../src/log.js';
import { silentLogger } from '../../../src/log.js';
import { ADAPTIVE_MAX, type AdaptiveView } from '../../../src/pools/llm/adaptive.js';
import { createLlmParts } from '../../../src/pools/llm/instance.js';
import { llmTotals } from '../../../src/pools/llm/totals.js';
import type { LlmTaskInput } from '../../../src/pools/llm/types.js';
import { JobStore } from '../../../src/store/store.js';
import { LmStudioDouble } from '../../fixtures/lmstudio-double.js';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { testConfig } from '../../helpers/client.js';

const cleanups = cleanupsAfterEach();

/** Polls `check` until it holds or `ms` pass (no fixed sleep before asserting). */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(50);
  }
  return check();
}

describe('AdaptiveLimits over real HTTP', () => {
  it('finds the 6 slots of a server that tells none, while the pool runs a batch through it', async () => {
    // An OpenAI-only server (no /props, no /api/*): 6 parallel slots, each answer takes 250 ms.
    const double = await LmStudioDouble.start({ flavor: 'openai', slots: 6, latencyMs: 250 });
    cleanups.push(() => double.close());
    const config = await testConfig((c) => {
      c.llm.endpoints = [
        { name: 'plain', url: double.url, concurrency: 4, concurrencyAuto: true, models: [], flavor: 'openai' },
      ];
    });
    const lines: string[] = [];
    const log: Logger = { ...silentLogger, info: (m) => lines.push(m) };
    const { endpoints, pool } = createLlmParts(config, { log, env: {}, adaptiveWindowMs: 2000 });
    const engine = new Engine({
      store: new JobStore(config.stateDir, silentLogger),
      pools: [pool],
      totals: new Map([['llm', llmTotals]]),
      log: silentLogger,
      retentionDays: 1,
    });
    await engine.init();
    cleanups.push(async () => {
      await engine.close();
      await endpoints.close();
      await rm(config.stateDir, { recursive: true, force: true });
    });
    // The probe finds no slots (no /props, no LM Studio or Ollama list): the limit is measured, from 4.
    await endpoints.resolveModel('test-model', AbortSignal.timeout(10_000));
    expect(endpoints.limitSourceOf('plain')).toBe('learned');
    expect(endpoints.router.stats('plain')?.limit).toBe(4);
    // A job planned now may run up to the measured limit's ceiling: the router holds it to the limit.
    expect(endpoints.capacityOf(['plain'])).toBe(ADAPTIVE_MAX);

    const inputs: LlmTaskInput[] = Array.from({ length: 2000 }, (_, i) => ({
      id: String(i + 1),
      messages: [{ role: 'user', content: `question ${i}` }],
    }));
    // The job may run as many at once as the adaptive limit could reach: the router holds it to the limit.
    const job = await engine.submit({
      kind: 'llm',
      inputs,
      options: { model: 'test-model', timeout_seconds: 30 },
      concurrency: endpoints.capacityOf(['plain']),
    });
    const view = (): AdaptiveView | undefined => endpoints.adaptiveView('plain');
    const found = await until(() => view()?.phase === 'hold', 50_000);
    await engine.cancel(job.id);
    expect(found, lines.join('\n')).toBe(true);
    expect([6, 7], lines.join('\n')).toContain(view()?.limit);
    expect(endpoints.router.stats('plain')?.limit).toBe(view()?.limit);
    // Measure 4, then 5 and 6 gain; a probe above 6 gains nothing.
    expect(lines.some((l) => l.startsWith('endpoint plain: trying 5 at once'))).toBe(true);
    expect(view()?.steps).toBeLessThanOrEqual(6);
    expect(double.peakActive).toBe(6);
    expect(double.peakInFlight).toBeLessThanOrEqual(8);
    // Every answer measured was saturated work: ~24 answers/s of 4 tokens at 6 at once.
    expect(view()?.tokensPerSecond).toBeGreaterThan(60);
  }, 90_000);
});
