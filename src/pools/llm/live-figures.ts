import type { LiveCard } from '../kind.js';
import type { RateBuckets } from '../rates.js';
import type { Router } from './router.js';
import type { EndpointConfig } from './settings.js';
import type { ModelInfo } from './types.js';

/** What the live figures are read from. */
export interface LiveSources {
  router: Router;
  /** Completion tokens per endpoint. */
  rates: RateBuckets;
  /** The models an endpoint last listed. */
  models(name: string): readonly ModelInfo[];
  /** True while it refuses connections. */
  isAway(name: string): boolean;
}

/**
 * Each endpoint as a live card: requests in flight and its limit, requests waiting that it could
 * take, the models it has loaded, and tokens/s over the last five minutes. The one place the LLM
 * kind's live figures take their shape.
 */
export function endpointLiveCards(endpoints: readonly EndpointConfig[], sources: LiveSources): LiveCard[] {
  return endpoints.map((endpoint) => {
    const stats = sources.router.stats(endpoint.name);
    const models = sources
      .models(endpoint.name)
      .filter((m) => m.state !== 'not-loaded')
      .map((m) => m.id)
      .slice(0, 20);
    return {
      name: endpoint.name,
      detail: models.length > 0 ? models.join(', ') : 'no model loaded',
      busy: stats?.active ?? 0,
      limit: stats?.limit ?? endpoint.concurrency,
      waiting: sources.router.waitingFor(endpoint.name),
      reachable: !sources.isAway(endpoint.name),
      rate: { unit: 'tok/s', series: sources.rates.series(endpoint.name) },
    };
  });
}
