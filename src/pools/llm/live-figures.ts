import type { Router } from './router.js';
import type { EndpointConfig } from './settings.js';
import type { ModelInfo } from './types.js';

/** The tokens/s chart: 30 buckets of 10 s. */
const TOKEN_BUCKET_MS = 10_000;
const TOKEN_BUCKETS = 30;

/** Completion tokens per endpoint in 10-second buckets, for the dashboard's tokens/s chart. */
export class TokenRates {
  private readonly buckets = new Map<string, Map<number, number>>();
  private readonly now: () => number;

  constructor(now: () => number) {
    this.now = now;
  }

  /** Tokens an endpoint generated just now (an answer's completion tokens). */
  note(name: string, tokens: number): void {
    if (!(tokens > 0)) return;
    const bucket = Math.floor(this.now() / TOKEN_BUCKET_MS);
    const buckets = this.buckets.get(name) ?? new Map<number, number>();
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + tokens);
    for (const at of buckets.keys()) if (at <= bucket - TOKEN_BUCKETS) buckets.delete(at);
    this.buckets.set(name, buckets);
  }

  /** Tokens/s of `name` over the last five minutes: [bucket start (ms), tokens/s] per bucket. */
  series(name: string): Array<[number, number]> {
    const bucket = Math.floor(this.now() / TOKEN_BUCKET_MS);
    const buckets = this.buckets.get(name);
    const series: Array<[number, number]> = [];
    for (let at = bucket - TOKEN_BUCKETS + 1; at <= bucket; at++)
      series.push([at * TOKEN_BUCKET_MS, (buckets?.get(at) ?? 0) / (TOKEN_BUCKET_MS / 1000)]);
    return series;
  }
}

/** What the live figures are read from. */
export interface LiveSources {
  router: Router;
  rates: TokenRates;
  /** The models an endpoint last listed. */
  models(name: string): readonly ModelInfo[];
  /** True while it refuses connections. */
  isAway(name: string): boolean;
}

/**
 * Each endpoint as it is now, for the live dashboard: requests in flight and its limit, requests
 * waiting that it could take, models it lists, and tokens/s over the last five minutes. The one
 * place the LLM kind's live figures take their shape.
 */
export function endpointLiveFigures(
  endpoints: readonly EndpointConfig[],
  sources: LiveSources,
): Array<Record<string, unknown>> {
  return endpoints.map((endpoint) => {
    const stats = sources.router.stats(endpoint.name);
    return {
      name: endpoint.name,
      busy: stats?.active ?? 0,
      limit: stats?.limit ?? endpoint.concurrency,
      waiting: sources.router.waitingFor(endpoint.name),
      peak: stats?.peak ?? 0,
      reachable: !sources.isAway(endpoint.name),
      models: sources
        .models(endpoint.name)
        .filter((m) => m.state !== 'not-loaded')
        .map((m) => m.id)
        .slice(0, 20),
      tokens_per_second: sources.rates.series(endpoint.name),
    };
  });
}
