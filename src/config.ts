import { CORE_CONSTRAINTS, CORE_SETTINGS, type CoreConfig } from './config/core.js';
import { optionsHelp, settingsTable } from './config/docs.js';
import { type ConfigSources, parseSettings } from './config/parse.js';
import { mergeTrees } from './config/settings.js';
import { KINDS, type KindsConfig } from './registry.js';

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
