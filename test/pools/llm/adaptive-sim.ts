import { AdaptiveLimits, type AdaptiveView } from '../../../src/pools/llm/adaptive.js';
import type { Logger } from '../../../src/log.js';
import { seededRandom } from '../../helpers/random.js';

/** How the simulated server behaves. */
export interface SimServer {
  /** Requests it decodes at once; more queue (FIFO). */
  slots: number;
  /** Tokens per second one slot generates. */
  perSlot: number;
  /** Tokens per answer (mean). */
  tokens: number;
  /** Each answer's length varies by up to this share either way (noise), from a seeded generator. */
  jitter?: number;
  /** Every answer slows by this share per request in flight beyond the slots (a server that thrashes). */
  thrash?: number;
  seed?: number;
}

export interface SimOptions {
  start: number;
  max: number;
  /** Requests the client has to send (default: always more than the limit). */
  demand?: number;
  windowMs?: number;
  reprobeMs?: number;
}

/**
 * A deterministic simulation: a fake clock, a router stand-in whose in-flight count is the client's
 * requests, and a server whose total throughput is min(in flight, slots) × perSlot. Time moves in
 * 5 ms steps; answers are noted as they complete; the adaptive limit's sampler runs every 50 ms.
 */
export class Sim {
  clock = 0;
  server: SimServer;
  readonly limits: number[] = [];
  readonly lines: string[] = [];
  readonly adaptive: AdaptiveLimits;
  demand: number;
  private limit = 1;
  /** Requests in flight: when each one ends (undefined while queued in the server). */
  private readonly flight: Array<{ ends: number | undefined; tokens: number }> = [];
  private random: () => number;

  constructor(server: SimServer, options: SimOptions) {
    this.server = server;
    this.demand = options.demand ?? Infinity;
    this.random = seededRandom(server.seed ?? 1);
    const log: Logger = {
      debug: () => {},
      info: (m) => this.lines.push(m),
      warn: (m) => this.lines.push(m),
      error: (m) => this.lines.push(m),
    };
    const router = {
      setLimit: (name: string, n: number): void => {
        this.limit = n;
        this.limits.push(n);
      },
      stats: () => ({ active: this.flight.length, limit: this.limit, peak: 0, down: false }),
      waitingFor: () => 0,
    };
    this.adaptive = new AdaptiveLimits({
      router,
      log,
      now: () => this.clock,
      windowMs: options.windowMs ?? 5_000,
      sampleMs: 1e9,
      reprobeMs: options.reprobeMs ?? 600_000,
    });
    this.adaptive.activate('sim', options.start, options.max);
  }

  get view(): AdaptiveView {
    const view = this.adaptive.view('sim');
    if (!view) throw new Error('not active');
    return view;
  }

  /** Runs until `done` holds (checked every step) or `ms` of simulated time pass; true when `done` held. */
  run(ms: number, done: (view: AdaptiveView) => boolean = () => false): boolean {
    const until = this.clock + ms;
    while (this.clock < until) {
      this.step();
      if (done(this.view)) return true;
    }
    return false;
  }

  private step(): void {
    this.clock += 5;
    for (let i = 0; i < this.flight.length;) {
      const request = this.flight[i];
      if (request?.ends !== undefined && request.ends <= this.clock) {
        this.flight.splice(i, 1);
        this.adaptive.noteTokens('sim', request.tokens);
      } else i++;
    }
    while (this.flight.length < Math.min(this.limit, this.demand)) {
      const jitter = this.server.jitter ?? 0;
      const tokens = Math.round(this.server.tokens * (1 + jitter * (2 * this.random() - 1)));
      this.flight.push({ ends: undefined, tokens });
    }
    const beyond = Math.max(0, this.flight.length - this.server.slots);
    const slow = 1 + (this.server.thrash ?? 0) * beyond;
    let serving = this.flight.filter((r) => r.ends !== undefined).length;
    for (const request of this.flight) {
      if (serving >= this.server.slots) break;
      if (request.ends !== undefined) continue;
      request.ends = this.clock + (request.tokens / this.server.perSlot) * 1000 * slow;
      serving++;
    }
    if (this.clock % 50 === 0) this.adaptive.tick();
  }
}
