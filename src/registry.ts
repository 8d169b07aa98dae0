import { CORE_CONSTRAINTS, CORE_SETTINGS, type CoreConfig } from './config/core.js';
import { optionsHelp, settingsTable } from './config/docs.js';
import { type ConfigSources, parseSettings } from './config/parse.js';
import { mergeTrees, type SettingsTree, type ValuesOfAll } from './config/settings.js';
import { httpKind } from './pools/http/index.js';
import type { DoctorReport, KindDeps, KindInstance, LentServices, TaskCap, WorkerKind } from './pools/kind.js';
import { llmKind } from './pools/llm/index.js';
import { scriptKind } from './pools/script/index.js';
import { httpBatchTool } from './tools/http_batch.js';
import { listWorkersTool } from './tools/list_workers.js';
import { lmstudioCompleteTool } from './tools/lmstudio_complete.js';
import { lmstudioInvestigateTool } from './tools/lmstudio_investigate.js';
import { lmstudioModelsTool } from './tools/lmstudio_models.js';
import { runScriptBatchTool } from './tools/run_script_batch.js';
import type { AnyTool, KindTool } from './tools/tool.js';
import type { JobTotals } from './engine/types.js';

/** A kind with the tools that drive it. */
export interface RegisteredKind<Settings extends SettingsTree, Services> {
  kind: WorkerKind<Settings, Services>;
  tools: ReadonlyArray<KindTool<Services>>;
}

function register<Settings extends SettingsTree, Services>(
  kind: WorkerKind<Settings, Services>,
  ...tools: ReadonlyArray<KindTool<Services>>
): RegisteredKind<Settings, Services> {
  return { kind, tools };
}

/** Every worker kind this server runs, with its tools, in the order clients list them. Adding a kind = one line here. */
export const KINDS = [
  register(scriptKind, runScriptBatchTool, listWorkersTool),
  register(llmKind, lmstudioCompleteTool, lmstudioInvestigateTool, lmstudioModelsTool),
  register(httpKind, httpBatchTool),
] as const;

/** Every kind's settings as values (`config.script`, `config.llm`, …). */
export type KindsConfig = ValuesOfAll<(typeof KINDS)[number]['kind']['settings']>;

export { configFilePath, type ConfigSources } from './config/parse.js';

/** The whole configuration: the server's own settings and every kind's. */
export type Config = CoreConfig & KindsConfig;

/** Every setting: the core's, then each registered kind's. */
const SETTINGS = mergeTrees(CORE_SETTINGS, ...KINDS.map(({ kind }) => kind.settings));
const CONSTRAINTS = [...CORE_CONSTRAINTS, ...KINDS.flatMap(({ kind }) => kind.constraints ?? [])];

/**
 * defaults < config file < environment < command-line flags. Pure: everything it reads comes in
 * through `src`, so tests cover every layer without touching the process.
 */
export function parseConfig(src: ConfigSources): Config {
  return parseSettings(SETTINGS, CONSTRAINTS, src) as Config;
}

/** The options part of `monitor-mcp --help`. */
export function configHelp(): string {
  return optionsHelp(SETTINGS);
}

/** The settings table of docs/configuration.md. */
export function configTable(): string {
  return settingsTable(SETTINGS);
}

/** A kind as the server describes it before any pool is loaded: what initialize and tools/list need. */
export interface KindFacts {
  name: string;
  summary: string;
  instructions: readonly string[];
  taskCap: TaskCap;
  totals: JobTotals<unknown> | undefined;
  tools: readonly AnyTool[];
}

/** A kind built for a server: its instance, and its tools (their handlers get the instance's services). */
export interface BuiltKind extends KindFacts {
  instance: KindInstance<unknown>;
}

/** Every kind's facts for this config: no pool loaded, nothing built. */
export function describeKinds(config: CoreConfig & KindsConfig): KindFacts[] {
  return KINDS.map((registered) => factsOf(registered, config));
}

function factsOf({ kind, tools }: (typeof KINDS)[number], config: CoreConfig & KindsConfig): KindFacts {
  return {
    name: kind.name,
    summary: kind.summary,
    instructions: kind.instructions ?? [],
    taskCap: kind.taskCap(config),
    totals: kind.totals,
    tools,
  };
}

/**
 * Builds every kind from the config: each loads its pool's modules, then makes objects only, no
 * I/O. The env vars any kind names as holding secrets are kept from all kinds' worker processes.
 * What each kind lends is gathered into one object every kind holds as `deps.lent`, filled once
 * all are built (so only used at run time).
 */
export async function buildKinds(
  config: CoreConfig & KindsConfig,
  deps: Omit<KindDeps, 'secretEnv' | 'lent'>,
): Promise<BuiltKind[]> {
  const secretEnv = secretEnvOf(config);
  const lent: LentServices = {};
  const built = await Promise.all(
    KINDS.map(async (registered): Promise<BuiltKind> => ({
      ...factsOf(registered, config),
      instance: await registered.kind.create(config, { ...deps, secretEnv, lent }),
    })),
  );
  for (const { instance } of built) Object.assign(lent, instance.lends);
  return built;
}

/** The env vars any kind names as holding secrets: kept from every kind's worker processes. */
export function secretEnvOf(config: CoreConfig & KindsConfig): ReadonlySet<string> {
  return new Set(KINDS.flatMap(({ kind }) => kind.secretEnv?.(config) ?? []));
}

/** Each kind's running totals over its jobs' results, by kind name: for readers of the state directory. */
export function kindTotals(): ReadonlyMap<string, JobTotals<unknown>> {
  return new Map(KINDS.flatMap(({ kind }) => (kind.totals ? [[kind.name, kind.totals] as const] : [])));
}

/** Every kind's `doctor` checks, in registry order. */
export async function doctorKinds(
  config: CoreConfig & KindsConfig,
  deps: Pick<KindDeps, 'log' | 'env' | 'platform'>,
  report: DoctorReport,
  signal: AbortSignal,
): Promise<void> {
  for (const { kind } of KINDS) await kind.doctor?.(config, deps, report, signal);
}
