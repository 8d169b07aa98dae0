import { createHash } from 'node:crypto';
import type { ServerFlavor, SlotFacts } from './server-facts.js';
import type { ChatMessage } from './types.js';

/** What the affinity reads about an endpoint (Endpoints provides both once it probed the server). */
export interface SlotSource {
  serverFlavor(name: string): ServerFlavor | undefined;
  slotsOf(name: string): SlotFacts | undefined;
}

/** Where one request goes: `cache_prompt` on a llama-server, and its slot when the server told how many it has. */
export interface SlotChoice {
  slot?: number;
}

/** One request's place: taken before the router's lease, released with it. */
export interface Turn {
  /** The choice for the endpoint the router picked; undefined where reuse does not apply (not a llama-server, or off). */
  on(endpoint: string): SlotChoice | undefined;
  release(): void;
}

/**
 * Conversations whose shared part is shorter than this get no key: re-reading a few hundred tokens
 * costs less than holding their requests to a few slots.
 */
export const MIN_SHARED_CHARS = 2000;

/**
 * Slots one prefix may use on a server with `total`: a third, so three prefixes keep every slot
 * busy, and one prefix alone evaluates its shared part at most that many times (8 questions over
 * one file on 6 slots: twice, ≤ 1/3 of the prompts' tokens). On CPU, where total throughput is flat
 * in the slots, fewer slots for one prefix cost no wall time.
 */
export function slotsPerPrefix(total: number): number {
  return Math.max(1, Math.ceil(total / 3));
}

/** A short stable key for text parts (a hash: the parts themselves may be megabytes). */
export function hashKey(...parts: readonly string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(`${part.length}:`).update(part);
  return hash.digest('hex').slice(0, 24);
}

/**
 * The key of a conversation that names none: everything before its last message, when that is
 * long enough to be worth a slot (prompts that differ only in their last message).
 */
export function conversationKey(model: string, messages: readonly ChatMessage[]): string | undefined {
  const shared = messages.slice(0, -1);
  const chars = shared.reduce((sum, m) => sum + m.content.length, 0);
  if (chars < MIN_SHARED_CHARS) return undefined;
  return hashKey(model, ...shared.flatMap((m) => [m.role, m.content, JSON.stringify(m.tool_calls ?? null)]));
}

interface Slot {
  /** The key whose prompt the slot's cache holds (undefined: none, or an unkeyed prompt's). */
  owner: string | undefined;
  busy: number;
  /** Tick of its last release: the least recently used idle slot is the one to give away. */
  usedAt: number;
}

interface Table {
  total: number;
  slots: Slot[];
  /** Requests in flight per key on this endpoint. */
  byKey: Map<string, number>;
}

interface Waiter {
  key: string;
  endpoints: readonly string[];
  admit(): void;
}

/**
 * Prefix affinity on llama-server endpoints: requests sharing a prefix key go to the slots that
 * already hold that prefix (`id_slot`, `cache_prompt`), at most slotsPerPrefix of them, so other
 * keys keep the other slots and run alongside. A key's requests beyond its slots wait here, before
 * the router's lease, so they hold no lease another prefix could use. Other servers get nothing
 * (the prompt's order alone lets their own cache work).
 */
export class PrefixSlots {
  private readonly source: SlotSource;
  private readonly enabled: boolean;
  private readonly tables = new Map<string, Table>();
  private readonly admitted = new Map<string, number>();
  private readonly waiters: Waiter[] = [];
  private tick = 0;

  constructor(source: SlotSource, enabled: boolean) {
    this.source = source;
    this.enabled = enabled;
  }

  /**
   * Waits until `key` may have one more request on `endpoints` (its slots there are not all taken
   * by its own requests), or the signal aborts; every request ahead of it ends within its timeout.
   */
  enter(key: string | undefined, endpoints: readonly string[], signal: AbortSignal): Promise<Turn> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.enabled || key === undefined || this.mayEnter(key, endpoints)) return Promise.resolve(this.turn(key));
    return new Promise<Turn>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter);
        if (at !== -1) this.waiters.splice(at, 1);
        reject(signal.reason);
      };
      const waiter: Waiter = {
        key,
        endpoints,
        admit: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.turn(key));
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Requests of `key` admitted now (for tests and logs). */
  inFlight(key: string): number {
    return this.admitted.get(key) ?? 0;
  }

  /** The key each slot of `endpoint` holds (for tests and logs). */
  owners(endpoint: string): (string | undefined)[] {
    return this.tables.get(endpoint)?.slots.map((slot) => slot.owner) ?? [];
  }

  /** A key may go on while its admitted requests are fewer than its slots over every endpoint; unbounded where one is not a llama-server with known slots. */
  private mayEnter(key: string, endpoints: readonly string[]): boolean {
    let room = 0;
    for (const name of endpoints) {
      const total = this.llamaSlots(name);
      if (total === undefined) return true;
      room += slotsPerPrefix(total);
    }
    return (this.admitted.get(key) ?? 0) < room;
  }

  private llamaSlots(name: string): number | undefined {
    if (this.source.serverFlavor(name) !== 'llama-server') return undefined;
    const total = this.source.slotsOf(name)?.total;
    return total !== undefined && Number.isInteger(total) && total > 0 ? total : undefined;
  }

  private turn(key: string | undefined): Turn {
    if (key !== undefined) this.admitted.set(key, (this.admitted.get(key) ?? 0) + 1);
    let taken: { table: Table; slot: Slot } | undefined;
    let released = false;
    return {
      on: (endpoint) => {
        if (!this.enabled || this.source.serverFlavor(endpoint) !== 'llama-server') return undefined;
        if (taken) this.free(taken.table, taken.slot, key);
        taken = this.take(endpoint, key);
        return taken ? { slot: taken.table.slots.indexOf(taken.slot) } : {};
      },
      release: () => {
        if (released) return;
        released = true;
        if (taken) this.free(taken.table, taken.slot, key);
        if (key !== undefined) {
          const left = (this.admitted.get(key) ?? 1) - 1;
          if (left > 0) this.admitted.set(key, left);
          else this.admitted.delete(key);
        }
        this.wake();
      },
    };
  }

  /** The slot for one request of `key` on `endpoint`, marked busy; undefined while the server's slots are unknown. */
  private take(endpoint: string, key: string | undefined): { table: Table; slot: Slot } | undefined {
    const total = this.llamaSlots(endpoint);
    if (total === undefined) return undefined;
    let table = this.tables.get(endpoint);
    if (!table || table.total !== total) {
      // First use, or the server came back with other slots: nothing known about their caches.
      table = {
        total,
        slots: Array.from({ length: total }, () => ({ owner: undefined, busy: 0, usedAt: 0 })),
        byKey: new Map(),
      };
      this.tables.set(endpoint, table);
    }
    const slot = this.pick(table, key);
    slot.busy++;
    if (key !== undefined) table.byKey.set(key, (table.byKey.get(key) ?? 0) + 1);
    return { table, slot };
  }

  /**
   * The key's own idle slot (the latest used); else, while it has fewer requests here than its
   * share, an idle slot nobody's prefix is worth keeping in (free, then one whose key has nothing in
   * flight, least recently used), which it takes over; else its own least busy slot (the server
   * queues the request for it); else the least busy slot.
   */
  private pick(table: Table, key: string | undefined): Slot {
    const { slots } = table;
    const idle = slots.filter((slot) => slot.busy === 0);
    const mine = key === undefined ? [] : slots.filter((slot) => slot.owner === key);
    const mineIdle = mine.filter((slot) => slot.busy === 0);
    if (mineIdle.length > 0) return mineIdle.reduce((a, b) => (b.usedAt > a.usedAt ? b : a));
    const share = key === undefined ? Infinity : slotsPerPrefix(table.total);
    if (idle.length > 0 && (key === undefined ? 0 : (table.byKey.get(key) ?? 0)) < share) {
      const rank = (slot: Slot): number =>
        slot.owner === undefined ? 0 : (this.admitted.get(slot.owner) ?? 0) === 0 ? 1 : 2;
      const slot = idle.reduce((a, b) => (rank(b) < rank(a) || (rank(b) === rank(a) && b.usedAt < a.usedAt) ? b : a));
      slot.owner = key;
      return slot;
    }
    const pool = mine.length > 0 ? mine : slots;
    // Never empty: a table has at least one slot.
    return pool.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  private free(table: Table, slot: Slot, key: string | undefined): void {
    slot.busy = Math.max(0, slot.busy - 1);
    slot.usedAt = ++this.tick;
    if (key === undefined) return;
    const left = (table.byKey.get(key) ?? 1) - 1;
    if (left > 0) table.byKey.set(key, left);
    else table.byKey.delete(key);
  }

  /** Admits waiting requests, in order, whose key has room again. */
  private wake(): void {
    for (let i = 0; i < this.waiters.length;) {
      const waiter = this.waiters[i];
      if (!waiter) break;
      if (!this.mayEnter(waiter.key, waiter.endpoints)) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      waiter.admit();
    }
  }
}
