import { MonitorError } from '../../errors.js';
import type { EndpointClient } from './client.js';
import { Deadline } from './deadline.js';
import { LlmError } from './errors.js';
import { raceSignal } from './race.js';
import type { ServerFacts } from './server-facts.js';
import type { ModelInfo } from './types.js';
import { answeredStatus } from './upstream.js';

/** What one endpoint's model list is known to be. */
export interface Discovery {
  /** When the last refresh finished. */
  at: number;
  /** The last list read successfully; kept when a later refresh fails. */
  models?: ModelInfo[];
  /** What the server said about itself (flavour, slots) with that list. */
  facts?: ServerFacts;
  /** Set when the last refresh failed. */
  error?: MonitorError<string>;
  /** The last refresh got an HTTP answer (even an error answer). */
  answered: boolean;
}

/** Model lists are cached this long; after a failure, the next "cached" caller refreshes sooner. */
const DISCOVERY_TTL_MS = 30_000;
const FAILURE_TTL_MS = 3_000;

export interface ModelListsDeps {
  client(name: string): EndpointClient;
  /** Upper bound of one list request, with the 10 s cap of a model list on top. */
  requestTimeoutMs: number;
  now: () => number;
  /** Aborts the requests under way when the server shuts down. */
  lifetime: AbortSignal;
  /** The endpoint answered (its list, or an error answer): it is there. */
  onAnswer(name: string): void;
  /** A probe read what the server is (flavour, slots): the router's limit follows it. */
  onFacts?(name: string, facts: ServerFacts, models: readonly ModelInfo[]): void;
}

/**
 * Each endpoint's model list, cached: read on demand, refreshed in the background when old, one
 * request at a time per endpoint, the last good list kept through a failed refresh.
 */
export class ModelLists {
  private readonly lists = new Map<string, Discovery>();
  /** Bumped by invalidate(): a refresh started before then neither fills the cache nor is shared after. */
  private readonly generations = new Map<string, number>();
  private readonly pending = new Map<string, { generation: number; promise: Promise<Discovery> }>();
  private readonly deps: ModelListsDeps;

  constructor(deps: ModelListsDeps) {
    this.deps = deps;
  }

  /** The list as last read, without asking. */
  latest(name: string): Discovery | undefined {
    return this.lists.get(name);
  }

  /**
   * An endpoint's model list. `fresh` asks the server now (sharing a request already under way);
   * `cached` answers from the cache when there is one, refreshing it in the background when old.
   */
  async discover(name: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<Discovery> {
    const cached = this.lists.get(name);
    if (mode === 'cached' && cached) {
      const ttl = cached.error ? FAILURE_TTL_MS : DISCOVERY_TTL_MS;
      if (this.deps.now() - cached.at > ttl) void this.refresh(name).catch(() => undefined);
      return cached;
    }
    return raceSignal(this.refresh(name), signal);
  }

  private generationOf(name: string): number {
    return this.generations.get(name) ?? 0;
  }

  /** Reads the list now, or joins a read of the current generation already under way. Never rejects. */
  refresh(name: string): Promise<Discovery> {
    const generation = this.generationOf(name);
    const pending = this.pending.get(name);
    if (pending && pending.generation === generation) return pending.promise;
    const client = this.deps.client(name);
    const deadline = new Deadline(
      Math.min(10_000, this.deps.requestTimeoutMs),
      [this.deps.lifetime],
      () =>
        new LlmError('ENDPOINT_UNREACHABLE', `Endpoint ${name} did not list its models within 10 s.`, {
          retryable: true,
        }),
    );
    const promise: Promise<Discovery> = client
      .discover(deadline.signal)
      .then(
        ({ models, facts }): Discovery => ({ at: this.deps.now(), models, facts, answered: true }),
        (error: unknown) => this.failed(name, generation, error),
      )
      .then((result) => {
        deadline.clear();
        if (this.generationOf(name) === generation) this.lists.set(name, result);
        if (this.pending.get(name)?.promise === promise) this.pending.delete(name);
        if (!result.error || result.answered) this.deps.onAnswer(name);
        if (result.facts && !result.error) this.deps.onFacts?.(name, result.facts, result.models ?? []);
        return result;
      });
    this.pending.set(name, { generation, promise });
    return promise;
  }

  /** A failed read, as a Discovery that keeps the last good list. */
  private failed(name: string, generation: number, error: unknown): Discovery {
    const mapped =
      error instanceof MonitorError
        ? error
        : new LlmError('ENDPOINT_UNREACHABLE', `Endpoint ${name} did not list its models.`, {
            cause: error,
            retryable: true,
          });
    const failed: Discovery = { at: this.deps.now(), error: mapped, answered: answeredStatus(mapped) !== undefined };
    const before = this.lists.get(name)?.facts;
    if (before && this.generationOf(name) === generation) failed.facts = before;
    // A failed refresh keeps the last good list: one hiccup must not fail a batch while the server is up.
    const previous = this.lists.get(name)?.models;
    if (previous && this.generationOf(name) === generation) failed.models = previous;
    return failed;
  }

  /** Forget the cached lists of `names` (after a warm-up, or when a model turned out to be gone). */
  invalidate(names: readonly string[]): void {
    for (const name of names) {
      this.generations.set(name, this.generationOf(name) + 1);
      this.lists.delete(name);
      this.pending.delete(name);
    }
  }
}
