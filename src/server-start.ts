import type { Engine } from './engine/engine.js';
import type { Ownership } from './engine/types.js';
import { errorText, MonitorError } from './errors.js';
import type { LivePublisher } from './live/publisher.js';
import type { Logger } from './log.js';
import type { Platform } from './platform/index.js';
import type { ProcessControl } from './processes.js';
import { type BuiltKind, buildKinds, type Config } from './registry.js';

/** How long after the recovery the live file starts and the kinds warm up (see LazyRuntime.afterRecovery). */
const LATER_MS = 100;

/** What tool calls run on: every kind built (its pool loaded), and the engine with the state directory recovered. */
export interface Runtime {
  engine: Engine;
  kinds: readonly BuiltKind[];
  /** The services of the kind named `kind` (undefined for none: the job tools). */
  services(kind: string | undefined): unknown;
}

export interface RuntimeDeps {
  config: Config;
  log: Logger;
  env: Readonly<Record<string, string | undefined>>;
  processes: ProcessControl;
  ownership: Ownership;
  platform: Platform;
  version: string;
}

/**
 * The server's working half, built once, after the handshake: the kinds (each loads its pool's
 * modules), the engine and the recovery of the state directory (earlier jobs loaded, expired ones
 * removed, orphaned workers ended); then the live file. initialize, tools/list and the other
 * listings never wait for it; every tool call does, so one made before the recovery has finished
 * still sees every earlier job.
 */
export class LazyRuntime {
  private building: Promise<Runtime> | undefined;
  /** Set as soon as the kinds and the engine exist, so that close() stops what the recovery started. */
  private made: Runtime | undefined;
  private built: Runtime | undefined;
  private live: LivePublisher | undefined;
  /** The live file and the kinds' warm-ups, started a moment after the state directory is recovered. */
  private later: Promise<void> | undefined;
  private laterTimer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(private readonly deps: RuntimeDeps) {}

  /** Starts the build on the first call (start(), or a tool call that came first); the same promise after. */
  ready(): Promise<Runtime> {
    if (this.closing)
      return Promise.reject(new MonitorError('SHUTTING_DOWN', 'The server is shutting down; start it again.'));
    this.building ??= this.build();
    return this.building;
  }

  /** The runtime once built and recovered, else undefined. */
  get current(): Runtime | undefined {
    return this.built;
  }

  private async build(): Promise<Runtime> {
    const { config, log, ownership } = this.deps;
    // Loaded here rather than with the server: ~60 modules the handshake does not need.
    const [{ Engine }, { JobStore }, { liveControl }] = await Promise.all([
      import('./engine/engine.js'),
      import('./store/store.js'),
      import('./server-live.js'),
    ]);
    const kinds = await buildKinds(config, {
      log,
      env: this.deps.env,
      processes: this.deps.processes,
      platform: this.deps.platform,
    });
    const engine = new Engine({
      store: new JobStore(config.stateDir, log),
      pools: kinds.map((k) => k.instance.pool),
      totals: new Map(kinds.flatMap((k) => (k.totals ? [[k.name, k.totals] as const] : []))),
      log,
      retentionDays: config.retentionDays,
      ownership,
      maxStateBytes: config.maxStateMB * 1024 * 1024,
    });
    const byName = new Map(kinds.map((k) => [k.name, k.instance.services]));
    const runtime: Runtime = { engine, kinds, services: (kind) => (kind === undefined ? undefined : byName.get(kind)) };
    this.made = runtime;
    const { loaded, removed, interrupted } = await engine.init();
    log.info(
      `state ${config.stateDir}: ${loaded} job(s) loaded, ${removed} expired removed, ${interrupted} with interrupted tasks`,
    );
    this.live = liveControl({ stateDir: config.stateDir, version: this.deps.version, engine, kinds, ownership, log });
    this.built = runtime;
    // Not awaited, and not at once: the calls that waited for the recovery run first.
    this.laterTimer = setTimeout(() => {
      if (!this.closing) this.later = this.afterRecovery(runtime);
    }, LATER_MS);
    this.laterTimer.unref();
    return runtime;
  }

  /**
   * The live file (its first beat asks the LLM endpoints, which loads the HTTP client) and the kinds'
   * warm-ups: what a first dispatch or task would otherwise wait for, loaded while the client has
   * nothing running. A live file that cannot be written costs the dashboard its view, not the server.
   */
  private async afterRecovery(runtime: Runtime): Promise<void> {
    const { config, log } = this.deps;
    await Promise.all([
      config.liveFigures
        ? this.live?.start().catch((error: unknown) => log.warn(`live figures: ${errorText(error)}`))
        : undefined,
      ...runtime.kinds.map((k) => k.instance.warmUp?.()),
    ]);
  }

  /** Stops running work (it loads as `interrupted` next time) and closes every kind; waits for a build under way first. */
  async close(): Promise<void> {
    this.closing = true;
    await this.building?.catch(() => undefined);
    clearTimeout(this.laterTimer);
    await this.later;
    const runtime = this.made;
    if (!runtime) return;
    const { log } = this.deps;
    await this.live?.close();
    await runtime.engine.close();
    for (const kind of runtime.kinds)
      await kind.instance.close().catch((error: unknown) => log.warn(`closing ${kind.name}: ${String(error)}`));
  }
}
