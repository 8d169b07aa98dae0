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
