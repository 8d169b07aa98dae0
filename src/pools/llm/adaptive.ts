import type { Logger } from '../../log.js';
import type { Router } from './router.js';

/** The most requests at once the adaptive limit tries when the user set no cap. */
export const ADAPTIVE_MAX = 32;

/** Where an adaptive endpoint is: measuring its level, trying one above or below, or holding the best. */
export type AdaptivePhase = 'measure' | 'up' | 'down' | 'hold';

/** An adaptive endpoint as lmstudio_models and the dashboard show it. */
export interface AdaptiveView {
  source: 'learned';
  /** Requests at once now (a probe level while trying one). */
  limit: number;
  max: number;
  phase: AdaptivePhase;
  /** The level with the most total tokens/s so far, and that figure (once a window was measured). */
  best?: number;
  tokensPerSecond?: number;
  /** Windows measured so far. */
  steps: number;
}

export interface AdaptiveOptions {
  router: Pick<Router, 'setLimit' | 'stats' | 'waitingFor'>;
  log: Logger;
  now?: () => number;
  /** Shortest measuring window (default 10 s); a window also needs enough answers (minCompletions, 5 per request in flight). */
  windowMs?: number;
  /** How often saturation is sampled (default windowMs / 10, at most 1 s). */
  sampleMs?: number;
  /** How long the best level is held before it is measured and probed again (default 5 min). */
  reprobeMs?: number;
  /** Fewest answers in a window (default 8; and at least 5 per request in flight). */
  minCompletions?: number;
}

/** Share of samples that must find the endpoint full for a window to count (else demand, not the server, set it). */
const SATURATED_SHARE = 0.8;
/** A probe must beat its reference by half the gain a linearly scaling server would give, within these bounds. */
const MIN_MARGIN = 0.03;
const MAX_MARGIN = 0.1;

/**
 * One measuring window. Answers that come together (within `bunchMs` of a bunch's first) count as
 * one point: requests started together end together, and a window cut inside such a bunch would
 * miscount it. The first bunch is the origin (its tokens are not counted); tokens/s is the
 * least-squares slope of tokens answered since then over time, through whole bunches only.
 */
interface Window {
  /** Answers still to let pass before measuring: those started under the previous level. */
  settle: number;
  /** Time of the origin's first answer (0 until it came). */
  start: number;
  /** The bunch being gathered. */
  bunch?: { first: number; last: number; weight: number };
  /** Answers in closed bunches after the origin, and their tokens. */
  answers: number;
  weight: number;
  /** Closed points, and running sums over them (t in s from start, c cumulative tokens). */
  n: number;
  lastX: number;
  st: number;
  sc: number;
  stc: number;
  stt: number;
  /** Sampler readings while measuring, and how many found the endpoint full. */
  samples: number;
  full: number;
}

interface Tuner {
  name: string;
  max: number;
  limit: number;
  phase: AdaptivePhase;
  /** What probes compare against: a level and its tokens/s. */
  ref?: { level: number; tps: number };
  /** A probe above the measured level gained (then no probe below follows). */
  climbed: boolean;
  steps: number;
  holdSince: number;
  window: Window;
}

/**
 * Requests at once for endpoints whose server tells no parallel slots: from a start level, raise
 * the router's limit while total tokens/s grows by a margin, back off to the best level when it
 * stops (or drops), and try fewer when more never helped; then hold and re-probe now and then.
 * Tokens/s is measured per window only while the endpoint is full (in flight = limit), over
 * enough answers, as the slope of tokens answered over time. Every change is logged.
 */
export class AdaptiveLimits {
  private readonly router: AdaptiveOptions['router'];
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly sampleMs: number;
  private readonly reprobeMs: number;
  private readonly minCompletions: number;
  private readonly bunchMs: number;
  private readonly tuners = new Map<string, Tuner>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: AdaptiveOptions) {
    this.router = options.router;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.windowMs = options.windowMs ?? 10_000;
    this.sampleMs = options.sampleMs ?? Math.min(1000, Math.max(10, this.windowMs / 10));
    this.reprobeMs = options.reprobeMs ?? 300_000;
    this.minCompletions = options.minCompletions ?? 8;
    this.bunchMs = this.windowMs / 20;
  }

  /** Starts adapting `name` at `start` requests at once, never above `max` (the user's cap, else ADAPTIVE_MAX). */
  activate(name: string, start: number, max: number): void {
    const top = Math.max(1, Math.floor(max));
    const level = Math.min(top, Math.max(1, Math.floor(start)));
    const tuner: Tuner = {
      name,
      max: top,
      limit: level,
      phase: 'measure',
      climbed: false,
      steps: 0,
      holdSince: 0,
      window: newWindow(level),
    };
    this.tuners.set(name, tuner);
    this.router.setLimit(name, level);
    this.log.info(
      `endpoint ${name}: the server tells no parallel slots: ${level} at once, adapting to its tokens/s (up to ${top})`,
    );
    this.timer ??= setInterval(() => this.tick(), this.sampleMs);
    this.timer.unref();
  }

  /** Stops adapting `name` (its server told its slots, or it went away); its limit stays where it is. */
  deactivate(name: string): void {
    this.tuners.delete(name);
    if (this.tuners.size === 0) this.stopTimer();
  }

  isActive(name: string): boolean {
    return this.tuners.has(name);
  }

  view(name: string): AdaptiveView | undefined {
    const t = this.tuners.get(name);
    if (!t) return undefined;
    const view: AdaptiveView = { source: 'learned', limit: t.limit, max: t.max, phase: t.phase, steps: t.steps };
    if (t.ref) {
      view.best = t.ref.level;
      view.tokensPerSecond = Math.round(t.ref.tps * 10) / 10;
    }
    return view;
  }

  /**
   * One answered request on `name` and its completion tokens (0 when the server counted none: the
   * answer then weighs 1, so such a server is measured in answers/s).
   */
  noteTokens(name: string, tokens: number): void {
    const t = this.tuners.get(name);
    if (!t || t.phase === 'hold') return;
    const w = t.window;
    if (w.settle > 0) {
      w.settle--;
      return;
    }
    const now = this.now();
    const weight = tokens > 0 ? tokens : 1;
    if (!w.bunch) {
      w.start = now;
      w.bunch = { first: now, last: now, weight };
      return;
    }
    if (now - w.bunch.first < this.bunchMs) {
      w.bunch.last = now;
      w.bunch.weight += weight;
      w.answers += w.n > 0 ? 1 : 0;
      return;
    }
    closeBunch(w);
    // This answer opens the next bunch: a window ends only on whole bunches.
    if (w.answers >= Math.max(this.minCompletions, 5 * t.limit) && w.lastX * 1000 >= this.windowMs && w.samples >= 2)
      return this.conclude(t);
    w.bunch = { first: now, last: now, weight };
    w.answers++;
  }

  /** Samples whether each measuring endpoint is full, and starts due re-probes (the timer calls it; tests call it with their clock). */
  tick(): void {
    const now = this.now();
    for (const t of this.tuners.values()) {
      if (t.phase === 'hold') {
        if (now - t.holdSince >= this.reprobeMs) this.remeasure(t);
        continue;
      }
      const w = t.window;
      if (!w.bunch) continue;
      const stats = this.router.stats(t.name);
      w.samples++;
      if ((stats !== undefined && stats.active >= stats.limit) || this.router.waitingFor(t.name) > 0) w.full++;
    }
  }

  close(): void {
    this.tuners.clear();
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A full window: what it measured decides the next level. */
  private conclude(t: Tuner): void {
    const w = t.window;
    if (w.full < w.samples * SATURATED_SHARE) return this.unsaturated(t);
    const tps = slope(w);
    if (tps === undefined) {
      t.window = newWindow(0);
      return;
    }
    t.steps++;
    if (t.phase === 'measure') this.measured(t, tps);
    else if (t.phase === 'up') this.probedUp(t, tps);
    else if (t.phase === 'down') this.probedDown(t, tps);
  }

  /** Too few requests to fill the endpoint: the window says nothing about the server; a probe's reference may be stale. */
  private unsaturated(t: Tuner): void {
    if ((t.phase === 'up' || t.phase === 'down') && t.ref) {
      this.phase(
        t,
        'measure',
        t.ref.level,
        `back to ${t.ref.level} at once (too few requests to fill it during the probe: measuring again)`,
      );
      return;
    }
    t.window = newWindow(t.limit);
  }

  private measured(t: Tuner, tps: number): void {
    t.ref = { level: t.limit, tps };
    t.climbed = false;
    this.log.debug(`endpoint ${t.name}: ${t.limit} at once gives ${fmt(tps)} tokens/s`);
    if (t.limit < t.max) this.tryUp(t, `tokens/s ${fmt(tps)} at ${t.limit}`);
    else if (t.limit > 1) this.tryDown(t, `tokens/s ${fmt(tps)} at ${t.limit}, the most allowed`);
    else this.hold(t, 1, `tokens/s ${fmt(tps)}: holding`);
  }

  private probedUp(t: Tuner, tps: number): void {
    const ref = t.ref ?? { level: t.limit, tps };
    const gain = tps / ref.tps - 1;
    const change = `tokens/s ${fmt(ref.tps)} → ${fmt(tps)}`;
    if (gain >= margin(ref.level, t.limit)) {
      t.ref = { level: t.limit, tps };
      t.climbed = true;
      if (t.limit < t.max) this.tryUp(t, `${t.limit} gave ${change}, ${pct(gain)}`);
      else this.hold(t, t.limit, `${change}, ${pct(gain)}, the most allowed: holding`);
      return;
    }
    const verdict = gain < -margin(ref.level, t.limit) ? 'a drop' : 'no gain';
    if (!t.climbed && ref.level > 1) this.tryDown(t, `${change} at ${t.limit}, ${verdict}`);
    else this.hold(t, ref.level, `${change} at ${t.limit}, ${verdict}: holding`);
  }

  private probedDown(t: Tuner, tps: number): void {
    const ref = t.ref ?? { level: t.limit, tps };
    const loss = 1 - tps / ref.tps;
    const change = `tokens/s ${fmt(ref.tps)} → ${fmt(tps)}`;
    if (loss <= margin(t.limit, ref.level)) {
      // Fewer did as well: the extra requests only queued in the server.
      t.ref = { level: t.limit, tps: Math.max(ref.tps, tps) };
      if (t.limit > 1) this.tryDown(t, `${change} at ${t.limit}, as good`);
      else this.hold(t, 1, `${change}, as good: holding`);
      return;
    }
    this.hold(t, ref.level, `${change} at ${t.limit}, a loss: holding`);
  }

  private tryUp(t: Tuner, why: string): void {
    const from = t.ref?.level ?? t.limit;
    const next = Math.min(t.max, from + stepOf(from));
    this.phase(t, 'up', next, `trying ${next} at once (${why})`);
  }

  private tryDown(t: Tuner, why: string): void {
    const from = t.ref?.level ?? t.limit;
    const next = Math.max(1, from - stepOf(from - 1));
    this.phase(t, 'down', next, `trying ${next} at once (${why}: checking fewer)`);
  }

  private hold(t: Tuner, level: number, why: string): void {
    this.phase(t, 'hold', level, `${level} at once (${why})`);
    t.holdSince = this.now();
  }

  /** Held long enough: measure the held level afresh (the load may have changed), then probe again. */
  private remeasure(t: Tuner): void {
    this.log.debug(`endpoint ${t.name}: measuring ${t.limit} at once again before probing`);
    t.phase = 'measure';
    t.window = newWindow(0);
  }

  /** Moves to `phase` at `level` (logging any change of limit) and opens a new window. */
  private phase(t: Tuner, phase: AdaptivePhase, level: number, message: string): void {
    const old = t.limit;
    t.phase = phase;
    t.limit = level;
    t.window = newWindow(Math.max(old, level));
    if (level !== old) this.router.setLimit(t.name, level);
    this.log.info(`endpoint ${t.name}: ${message}`);
  }
}

function newWindow(settle: number): Window {
  return { settle, start: 0, answers: 0, weight: 0, n: 0, lastX: 0, st: 0, sc: 0, stc: 0, stt: 0, samples: 0, full: 0 };
}

/** The bunch gathered so far becomes a point: its last answer's time, the tokens answered since the origin. */
function closeBunch(w: Window): void {
  const bunch = w.bunch;
  if (!bunch) return;
  if (w.n > 0) w.weight += bunch.weight;
  const x = (bunch.last - w.start) / 1000;
  w.n++;
  w.lastX = x;
  w.st += x;
  w.sc += w.weight;
  w.stc += x * w.weight;
  w.stt += x * x;
}

/** Tokens/s as the least-squares slope of cumulative tokens over time (undefined when all answers came at once). */
function slope(w: Window): number | undefined {
  const d = w.n * w.stt - w.st * w.st;
  if (!(d > 0)) return undefined;
  // Never 0: a later comparison divides by it.
  return Math.max(1e-6, (w.n * w.stc - w.st * w.sc) / d);
}

/** Levels tried at once from `level`: 1 up to 15, then an eighth (so a probe's expected gain stays measurable). */
function stepOf(level: number): number {
  return Math.max(1, Math.floor(level / 8));
}

/** The relative gain that counts between `low` and `high` requests at once: half what linear scaling would give. */
function margin(low: number, high: number): number {
  const linear = (high - low) / Math.max(1, low);
  return Math.min(MAX_MARGIN, Math.max(MIN_MARGIN, linear / 2));
}

const fmt = (tps: number): string => String(Math.round(tps));
const pct = (gain: number): string => `${gain >= 0 ? '+' : ''}${Math.round(gain * 100)}%`;
