import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Live memory of this process (heap plus array buffers), not garbage: a full GC runs before each
 * reading, so the measure does not depend on when GC happens to run. The reading waits one turn of
 * the event loop after the GC: buffers it collected are only subtracted from `arrayBuffers` once
 * their finalizers ran, and reading at once can count megabytes that are already dead.
 */
export async function liveBytes(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc: unknown = runInNewContext('gc');
  if (typeof gc === 'function') gc();
  await sleep(0);
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * Runs `work` while sampling live memory every `everyMs` (a GC per sample is costly: keep it
 * coarse). Returns its result and the peak growth over the live memory before it started.
 */
export async function peakGrowthDuring<T>(work: () => Promise<T>, everyMs = 100): Promise<{ result: T; growth: number }> {
  const baseline = await liveBytes();
  let peak = baseline;
  let running = true;
  const sampler = (async (): Promise<void> => {
    while (running) {
      peak = Math.max(peak, await liveBytes());
      await sleep(everyMs);
    }
  })();
  try {
    const result = await work();
    return { result, growth: Math.max(peak, await liveBytes()) - baseline };
  } finally {
    running = false;
    await sampler;
  }
}
