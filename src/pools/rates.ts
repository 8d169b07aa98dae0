import type { LiveCard } from './kind.js';

/** A rate chart: 30 buckets of 10 s (the last five minutes). */
const BUCKET_MS = 10_000;
const BUCKETS = 30;

/**
 * Amounts per named unit (an endpoint's tokens, a pool's finished tasks) in 10-second buckets, for
 * the live cards' rate charts. Old buckets are dropped as new ones fill: memory stays bounded.
 */
export class RateBuckets {
  private readonly buckets = new Map<string, Map<number, number>>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** `amount` more for `name`, just now. */
  note(name: string, amount: number): void {
    if (!(amount > 0)) return;
    const bucket = Math.floor(this.now() / BUCKET_MS);
    const buckets = this.buckets.get(name) ?? new Map<number, number>();
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + amount);
    for (const at of buckets.keys()) if (at <= bucket - BUCKETS) buckets.delete(at);
    this.buckets.set(name, buckets);
  }

  /** The rate of `name` over the last five minutes: [bucket start (ms), amount per second] per bucket. */
  series(name: string): Array<[number, number]> {
    const bucket = Math.floor(this.now() / BUCKET_MS);
    const buckets = this.buckets.get(name);
    const series: Array<[number, number]> = [];
    for (let at = bucket - BUCKETS + 1; at <= bucket; at++)
      series.push([at * BUCKET_MS, (buckets?.get(at) ?? 0) / (BUCKET_MS / 1000)]);
    return series;
  }
}

/**
 * A pool's work in hand and work finished, as its live card shows them: for a kind whose pool
 * counts whole runs (a script process, an HTTP request) and has no queue of its own.
 */
export class WorkGauge {
  private inHand = 0;
  private readonly finished: RateBuckets;
  private readonly name: string;

  constructor(name: string, now?: () => number) {
    this.name = name;
    this.finished = new RateBuckets(now);
  }

  /** Counts `work` as one run in hand while it lasts, and its `units` as finished once it ends. */
  async count<T>(units: number, work: () => Promise<T>): Promise<T> {
    this.inHand++;
    try {
      return await work();
    } finally {
      this.inHand--;
      this.finished.note(this.name, units);
    }
  }

  /** The card: runs in hand out of `limit`, and units finished per second. */
  card(limit: number, detail: string, unit: string): LiveCard {
    return {
      name: this.name,
      detail,
      busy: this.inHand,
      limit,
      rate: { unit, series: this.finished.series(this.name) },
    };
  }
}
