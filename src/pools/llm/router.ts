import { MonitorError } from '../../errors.js';

/** A slot held on one endpoint; release exactly once (extra calls are ignored). */
export interface Lease {
  endpoint: string;
  release(): void;
}

export interface RouterEndpoint {
  name: string;
  /** Requests in flight at once on this endpoint. */
  limit: number;
}

interface Slot {
  name: string;
  limit: number;
  active: number;
  /** Order in the config: breaks ties, so the first endpoint fills first when all are idle. */
  order: number;
  /** After a connection failure the endpoint is avoided until then, unless nothing else serves the model. */
  downUntil: number;
  /** Most requests seen in flight at once (for tests and lmstudio_models). */
  peak: number;
}

interface Waiter {
  candidates: ReadonlySet<string>;
  resolve(lease: Lease): void;
  reject(error: unknown): void;
  signal: AbortSignal;
  onAbort(): void;
}

/**
 * Per-endpoint limits and least-busy routing. A task asks for a slot on any endpoint serving its
 * model; it gets the least busy healthy one at once, or waits in FIFO order until one frees up.
 */
export class Router {
  private readonly slots = new Map<string, Slot>();
  private readonly waiters: Waiter[] = [];
  private readonly now: () => number;

  constructor(endpoints: readonly RouterEndpoint[], now: () => number = Date.now) {
    endpoints.forEach((e, order) => {
      if (!(Number.isInteger(e.limit) && e.limit > 0))
        throw new TypeError(`Expected endpoint ${e.name} concurrency to be an integer from 1 and up, got ${e.limit}`);
      this.slots.set(e.name, { name: e.name, limit: e.limit, active: 0, order, downUntil: 0, peak: 0 });
    });
    this.now = now;
  }

  /** Sum of all limits: how many requests may be in flight across endpoints. */
  get capacity(): number {
    let total = 0;
    for (const slot of this.slots.values()) total += slot.limit;
    return total;
  }

  capacityOf(names: Iterable<string>): number {
    let total = 0;
    for (const name of names) total += this.slots.get(name)?.limit ?? 0;
    return total;
  }

  stats(name: string): { active: number; limit: number; peak: number; down: boolean } | undefined {
    const slot = this.slots.get(name);
    return slot && { active: slot.active, limit: slot.limit, peak: slot.peak, down: slot.downUntil > this.now() };
  }

  /** Requests waiting for a slot that this endpoint could take (they may go to another serving their model). */
  waitingFor(name: string): number {
    return this.waiters.filter((waiter) => waiter.candidates.has(name)).length;
  }

  /**
   * Changes how many requests may be in flight on `name` (the server's slots were read, or the
   * adaptive limit moved). Lowering it lets requests in flight finish; raising it starts waiters.
   */
  setLimit(name: string, limit: number): void {
    const slot = this.slots.get(name);
    if (!slot || !(Number.isInteger(limit) && limit > 0) || slot.limit === limit) return;
    slot.limit = limit;
    this.drain();
  }

  /** Avoid this endpoint for `ms` (connection refused, reset). */
  markDown(name: string, ms: number): void {
    const slot = this.slots.get(name);
    if (slot) slot.downUntil = this.now() + ms;
  }

  markUp(name: string): void {
    const slot = this.slots.get(name);
    if (slot) slot.downUntil = 0;
  }

  /**
   * Resolves with a slot on one of `candidates`; rejects with the signal's reason if it aborts
   * first. (A job's own limit is the engine's: it never starts more of its tasks than that.)
   */
  acquire(candidates: readonly string[], signal: AbortSignal): Promise<Lease> {
    const set = new Set(candidates.filter((name) => this.slots.has(name)));
    if (set.size === 0)
      return Promise.reject(new MonitorError('INTERNAL', `No configured endpoint among: ${candidates.join(', ')}.`));
    if (signal.aborted) return Promise.reject(signal.reason);
    const slot = this.pick(set);
    if (slot) return Promise.resolve(this.lease(slot));
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        candidates: set,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = this.waiters.indexOf(waiter);
          if (at !== -1) this.waiters.splice(at, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /**
   * The least busy free slot: healthy endpoints first; a down endpoint only when every candidate is
   * down (then the request itself finds out whether it came back). Waits (undefined) while a
   * healthy candidate is merely full.
   */
  private pick(candidates: ReadonlySet<string>): Slot | undefined {
    const now = this.now();
    let best: Slot | undefined;
    let anyHealthy = false;
    for (const name of candidates) {
      const slot = this.slots.get(name);
      if (!slot || slot.downUntil > now) continue;
      anyHealthy = true;
      if (slot.active < slot.limit && (!best || busier(best, slot))) best = slot;
    }
    if (best || anyHealthy) return best;
    for (const name of candidates) {
      const slot = this.slots.get(name);
      if (slot && slot.active < slot.limit && (!best || busier(best, slot))) best = slot;
    }
    return best;
  }

  private lease(slot: Slot): Lease {
    slot.active++;
    slot.peak = Math.max(slot.peak, slot.active);
    let released = false;
    return {
      endpoint: slot.name,
      release: () => {
        if (released) return;
        released = true;
        slot.active--;
        this.drain();
      },
    };
  }

  private drain(): void {
    for (let i = 0; i < this.waiters.length;) {
      const waiter = this.waiters[i];
      if (!waiter) break;
      const slot = this.pick(waiter.candidates);
      if (!slot) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(this.lease(slot));
    }
  }
}

/** True when `a` is busier than `b` (by share of its limit, then count, then config order). */
function busier(a: Slot, b: Slot): boolean {
  const ra = a.active / a.limit;
  const rb = b.active / b.limit;
  if (ra !== rb) return ra > rb;
  if (a.active !== b.active) return a.active > b.active;
  return a.order > b.order;
}
