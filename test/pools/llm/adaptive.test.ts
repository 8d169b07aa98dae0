import { afterEach, describe, expect, it } from 'vitest';
import { AdaptiveLimits } from '../../../src/pools/llm/adaptive.js';
import { silentLogger } from '../../../src/log.js';
import { Sim, type SimServer } from './adaptive-sim.js';

const sims: Sim[] = [];
afterEach(() => {
  for (const sim of sims.splice(0)) sim.adaptive.close();
});

function sim(server: SimServer, options: ConstructorParameters<typeof Sim>[1]): Sim {
  const made = new Sim(server, options);
  sims.push(made);
  return made;
}

const held = (view: { phase: string }): boolean => view.phase === 'hold';
/** A 6-slot server: 20 tokens/s per slot, answers of 40 tokens (2 s each). */
const sixSlots: SimServer = { slots: 6, perSlot: 20, tokens: 40 };

describe('AdaptiveLimits', () => {
  it('finds the plateau of a 6-slot server from 4 in a few windows, and logs every change', () => {
    const s = sim(sixSlots, { start: 4, max: 32 });
    expect(s.run(600_000, held)).toBe(true);
    expect(s.view).toMatchObject({ limit: 6, best: 6, phase: 'hold', source: 'learned' });
    // Measure 4, try 5, 6, 7 (no gain): back to 6.
    expect(s.view.steps).toBeLessThanOrEqual(5);
    expect(s.view.tokensPerSecond).toBeGreaterThan(6 * 20 * 0.95);
    expect(s.view.tokensPerSecond).toBeLessThan(6 * 20 * 1.05);
    expect(s.limits).toEqual([4, 5, 6, 7, 6]);
    // One line per change of limit (and the first one saying it adapts).
    expect(s.lines).toHaveLength(s.limits.length);
    expect(s.lines[0]).toMatch(/endpoint sim: the server tells no parallel slots: 4 at once/);
    expect(s.lines.at(-1)).toMatch(/^endpoint sim: 6 at once \(tokens\/s 1\d\d → 1\d\d at 7, no gain: holding\)$/);
    // Holding: no further change while nothing is due.
    s.run(120_000);
    expect(s.limits).toHaveLength(5);
  });

  it('finds 6 (or 7) through noisy answer lengths, whatever the seed, never leaving its bounds', () => {
    for (const [jitter, levels] of [
      [0.5, [6, 7]],
      // Answers from 4 to 76 tokens: a noisy measure may stop one short or one beyond, not further.
      [0.9, [5, 6, 7]],
    ] as const) {
      for (let seed = 1; seed <= 20; seed++) {
        const s = sim({ ...sixSlots, jitter, seed }, { start: 4, max: 16 });
        expect(s.run(900_000, held), `seed ${seed}`).toBe(true);
        expect(levels, `jitter ${jitter}, seed ${seed}: ${s.lines.join(' | ')}`).toContain(s.view.limit);
        expect(s.view.steps).toBeLessThanOrEqual(6);
        expect(Math.min(...s.limits)).toBeGreaterThanOrEqual(1);
        expect(Math.max(...s.limits)).toBeLessThanOrEqual(16);
      }
    }
  });

  it('backs off to the best level when more requests at once make the server slower', () => {
    const s = sim({ ...sixSlots, thrash: 0.3 }, { start: 4, max: 32 });
    expect(s.run(600_000, held)).toBe(true);
    expect(s.view.limit).toBe(6);
    expect(s.limits).toEqual([4, 5, 6, 7, 6]);
    expect(s.lines.at(-1)).toMatch(/at 7, a drop: holding/);
  });

  it('tries fewer when more never helped, down to what the server really runs at once', () => {
    const s = sim({ slots: 2, perSlot: 20, tokens: 40 }, { start: 4, max: 32 });
    expect(s.run(900_000, held)).toBe(true);
    expect(s.view.limit).toBe(2);
    // 4, 5 (no gain), 3 and 2 (as good), 1 (a loss): back to 2.
    expect(s.limits).toEqual([4, 5, 3, 2, 1, 2]);
    expect(s.lines.at(-1)).toMatch(/^endpoint sim: 2 at once \(.* at 1, a loss: holding\)$/);
  });

  it('climbs a server that scales far in bigger steps, and stops at the cap', () => {
    const s = sim({ slots: 64, perSlot: 20, tokens: 40 }, { start: 4, max: 20 });
    expect(s.run(1_800_000, held)).toBe(true);
    expect(s.view.limit).toBe(20);
    expect(Math.max(...s.limits)).toBe(20);
    expect(s.limits).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20]);
    expect(s.lines.at(-1)).toMatch(/the most allowed: holding/);
  });

  it('measures nothing while too few requests fill the endpoint', () => {
    const s = sim(sixSlots, { start: 4, max: 32, demand: 3 });
    s.run(300_000);
    expect(s.view).toMatchObject({ limit: 4, phase: 'measure', steps: 0 });
    expect(s.limits).toEqual([4]);
    // Work arrives: now it adapts.
    s.demand = Infinity;
    expect(s.run(600_000, held)).toBe(true);
    expect(s.view.limit).toBe(6);
  });

  it('measures again when demand falls away during a probe, rather than compare with a stale figure', () => {
    const s = sim(sixSlots, { start: 4, max: 32 });
    expect(s.run(600_000, (v) => v.phase === 'up' && v.limit === 6)).toBe(true);
    s.demand = 2;
    s.run(60_000);
    expect(s.view).toMatchObject({ limit: 5, phase: 'measure' });
    expect(s.lines.at(-1)).toMatch(/back to 5 at once \(too few requests/);
    s.demand = Infinity;
    expect(s.run(600_000, held)).toBe(true);
    expect(s.view.limit).toBe(6);
  });

  it('re-probes after holding, and follows a server that now runs more at once', () => {
    const s = sim(sixSlots, { start: 4, max: 32, reprobeMs: 60_000 });
    expect(s.run(600_000, held)).toBe(true);
    s.server = { ...sixSlots, slots: 9 };
    expect(s.run(900_000, (v) => held(v) && v.limit === 9)).toBe(true);
    expect(Math.max(...s.limits)).toBe(10);
  });

  it('keeps its start within 1..max, stops on deactivate and close', () => {
    const limits: number[] = [];
    const router = {
      setLimit: (_: string, n: number) => void limits.push(n),
      stats: () => ({ active: 0, limit: 1, peak: 0, down: false }),
      waitingFor: () => 0,
    };
    const adaptive = new AdaptiveLimits({ router, log: silentLogger, windowMs: 1000 });
    adaptive.activate('a', 50, 8);
    adaptive.activate('b', 0, 8);
    expect(limits).toEqual([8, 1]);
    expect(adaptive.view('a')).toMatchObject({ limit: 8, max: 8, phase: 'measure', steps: 0 });
    adaptive.deactivate('a');
    expect(adaptive.view('a')).toBeUndefined();
    adaptive.noteTokens('a', 10);
    adaptive.close();
    expect(adaptive.isActive('b')).toBe(false);
    expect(limits).toEqual([8, 1]);
  });
});
