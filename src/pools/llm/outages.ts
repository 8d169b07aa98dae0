import { MonitorError } from '../../errors.js';
import { backoffMs, sleep } from '../retry.js';
import { Deadline } from './deadline.js';
import { firstTrue, raceSignal } from './race.js';

/**
 * How long tasks wait, from the start of an outage, for an endpoint that stopped taking connections
 * (LM Studio restarting, a model server being swapped) before they fail with ENDPOINT_UNREACHABLE.
 */
export const OUTAGE_WAIT_MS = 30_000;
/** Probes of an endpoint that is away: the first soon, then further apart, with jitter, at most 2 s. */
const OUTAGE_PROBE_BACKOFF = { baseMs: 250, capMs: 2_000 } as const;

/** An endpoint that refused connections and has not answered since. */
interface Outage {
  since: number;
  /** The connection failure that tasks fail with if it does not come back. */
  error: MonitorError<string>;
  /** Requests of tasks that failed to connect during it (probes not counted). */
  refused: number;
  probes: number;
  lastProbeAt: number;
  /** The probe under way, shared by every task waiting. */
  probe?: Promise<boolean> | undefined;
}

/** An outage as tests and reports see it. */
export interface OutageView {
  since: number;
  refused: number;
  probes: number;
  /** Tasks waiting for the endpoint now. */
  waiting: number;
}

export interface OutagesDeps {
  now: () => number;
  /** How long tasks wait for an endpoint that stopped taking connections. */
  waitMs: number;
  /** Aborts the probes' sleeps when the server shuts down. */
  lifetime: AbortSignal;
  /** Reads the endpoint's model list (never rejects); an answer ends its outage through end(). */
  refresh(name: string): Promise<unknown>;
}

/**
 * The endpoints' health: which ones refused connections and have not answered since, and the
 * waits of tasks for them to come back, served by one probe at a time per endpoint.
 */
export class Outages {
  private readonly outages = new Map<string, Outage>();
  private readonly waiting = new Map<string, number>();
  private readonly deps: OutagesDeps;

  constructor(deps: OutagesDeps) {
    this.deps = deps;
  }

  /** A task could not connect to `name`: an outage starts (or goes on) until the endpoint answers again. */
  noteUnreachable(name: string, error: MonitorError<string>): void {
    const now = this.deps.now();
    const outage = this.outages.get(name) ?? { since: now, error, refused: 0, probes: 0, lastProbeAt: now };
    outage.error = error;
    outage.refused++;
    this.outages.set(name, outage);
  }

  /** The endpoint answered (anything at all): its outage is over. */
  end(name: string): void {
    this.outages.delete(name);
  }

  /** True while `name` has refused connections and not answered since. */
  isAway(name: string): boolean {
    return this.outages.has(name);
  }

  /** The failure an outage of `name` started with, for tasks that fail without sending anything. */
  errorOf(name: string): MonitorError<string> | undefined {
    return this.outages.get(name)?.error;
  }

  view(name: string): OutageView | undefined {
    const outage = this.outages.get(name);
    return (
      outage && {
        since: outage.since,
        refused: outage.refused,
        probes: outage.probes,
        waiting: this.waiting.get(name) ?? 0,
      }
    );
  }

  /**
   * Waits until one of `names` (all away) answers again: true then, false once its outage is older
   * than the wait bound or `until` (on deps.now's clock) has passed. One probe at a time per endpoint
   * serves every waiting task, further apart each time, with jitter; past the bound a task only
   * joins a probe that is due, so a queue of tasks fails fast without a request each.
   * Rejects with the signal's reason when it aborts.
   */
  async waitForAny(names: readonly string[], until: number, signal: AbortSignal): Promise<boolean> {
    for (const name of names) this.waiting.set(name, (this.waiting.get(name) ?? 0) + 1);
    try {
      for (;;) {
        const away = names.flatMap((name) => {
          const outage = this.outages.get(name);
          return outage ? [{ name, outage }] : [];
        });
        if (away.length < names.length) return true;
        const now = this.deps.now();
        const deadline = Math.min(until, Math.max(...away.map(({ outage }) => outage.since + this.deps.waitMs)));
        if (deadline <= now) {
          // Past the bound: look once more only where a probe is due (at most every capMs), else fail now.
          const due = away.filter(({ outage }) => now - outage.lastProbeAt >= OUTAGE_PROBE_BACKOFF.capMs);
          if (due.length === 0) return false;
          return await raceSignal(firstTrue(due.map(({ name, outage }) => this.probe(name, outage))), signal);
        }
        const probed = await this.probeUntil(away, deadline - now, signal);
        if (probed !== 'none back') return probed === 'back';
      }
    } finally {
      for (const name of names) this.waiting.set(name, (this.waiting.get(name) ?? 1) - 1);
    }
  }

  /** The probes of `away` raced against a timer of `ms`: one came back, none did (probe again), or the time ran out. */
  private async probeUntil(
    away: ReadonlyArray<{ name: string; outage: Outage }>,
    ms: number,
    signal: AbortSignal,
  ): Promise<'back' | 'none back' | 'expired'> {
    const timer = new Deadline(ms, [signal], () => new MonitorError('TIMEOUT', 'The wait for the endpoint ran out.'));
    try {
      const back = await raceSignal(firstTrue(away.map(({ name, outage }) => this.probe(name, outage))), timer.signal);
      return back ? 'back' : 'none back';
    } catch (error) {
      if (!timer.expired) throw error;
      return 'expired';
    } finally {
      timer.clear();
    }
  }

  /** The probe of an outage under way, or the next one: after its backoff, a read of the model list. */
  private probe(name: string, outage: Outage): Promise<boolean> {
    outage.probe ??= this.runProbe(name, outage).finally(() => {
      outage.probe = undefined;
    });
    return outage.probe;
  }

  private async runProbe(name: string, outage: Outage): Promise<boolean> {
    const wait = outage.lastProbeAt + backoffMs(outage.probes + 1, OUTAGE_PROBE_BACKOFF) - this.deps.now();
    if (wait > 0) await sleep(wait, this.deps.lifetime);
    await this.deps.refresh(name);
    outage.probes++;
    outage.lastProbeAt = this.deps.now();
    // refresh() ends the outage (end()) when the server answers anything at all.
    return this.outages.get(name) !== outage;
  }
}
