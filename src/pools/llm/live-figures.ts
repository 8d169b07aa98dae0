import type { LiveCard } from '../kind.js';
import type { RateBuckets } from '../rates.js';
import type { Router } from './router.js';
import type { EndpointConfig } from './settings.js';
import type { Discovery } from './model-lists.js';

/** What the live figures are read from. */
export interface LiveSources {
  router: Router;
  /** Completion tokens per endpoint. */
  rates: RateBuckets;
  /** The endpoint's last probe (its own, kept fresh by the caller: never a past request's leftovers). */
  latest(name: string): Discovery | undefined;
  now: number;
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
    const probe = sources.latest(endpoint.name);
    const reachable = !sources.isAway(endpoint.name) && !(probe?.error && !probe.answered);
    return {
      name: endpoint.name,
      detail: cardDetail(probe, reachable, sources.now),
      busy: stats?.active ?? 0,
      limit: stats?.limit ?? endpoint.concurrency,
      waiting: sources.router.waitingFor(endpoint.name),
      reachable,
      rate: { unit: 'tok/s', series: sources.rates.series(endpoint.name) },
    };
  });
}

/** "llama-server · 6 slots · tiny (context 2048) · checked 3 s ago", or why it cannot say. */
function cardDetail(probe: Discovery | undefined, reachable: boolean, now: number): string {
  if (!probe) return 'checking…';
  const checked = `checked ${Math.max(0, Math.round((now - probe.at) / 1000))} s ago`;
  if (!reachable) return `unreachable · ${checked}`;
  if (probe.error) return `${probe.error.code} · ${checked}`;
  const loaded = (probe.models ?? [])
    .filter((m) => m.state !== 'not-loaded')
    .slice(0, 6)
    .map((m) => (m.contextLength ? `${m.id} (context ${m.contextLength})` : m.id));
  const slots = probe.facts?.slots ? `${probe.facts.slots.total} slots` : undefined;
  const models = loaded.length > 0 ? loaded.join(', ') : 'no model loaded';
  return [probe.facts?.flavor, slots, models, checked].filter((part) => part !== undefined).join(' · ');
}
