import { type Input, type SettingsTree, settingEntries } from './settings.js';

/** How often a flag may be given, for the help and the table ('' for once). */
const repeats = (flag: Input<unknown>): string =>
  flag.repeatable ? (flag.variadic ? 'repeatable; several may follow it' : 'repeatable') : '';

/** The `Options` part of `--help`: one line per flag, made from the settings' declarations. */
export function optionsHelp(tree: SettingsTree): string {
  const rows: Array<[string, string]> = [
    [
      '--config FILE',
      'JSON config file (default: $XDG_CONFIG_HOME/monitor-mcp/config.json; macOS ~/Library/Application Support/monitor-mcp/config.json; Windows %APPDATA%\\monitor-mcp\\config.json)',
    ],
  ];
  for (const { setting } of settingEntries(tree)) {
    for (const flag of setting.flags) {
      const notes = [
        repeats(flag),
        setting.defaultText === 'none' || setting.type === 'boolean' || flag.help
          ? ''
          : `default: ${setting.defaultText}`,
      ].filter((n) => n !== '');
      rows.push([
        flag.arg === undefined ? flag.name : `${flag.name} ${flag.arg}`,
        `${flag.help ?? setting.help}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
      ]);
    }
  }
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}${help}`).join('\n');
}

const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');
const code = (text: string): string => `\`${text}\``;

/** docs/configuration.md's settings table, made from the settings' declarations (a test keeps them equal). */
export function settingsTable(tree: SettingsTree): string {
  const lines = ['| Config file key | Env | Flag | Default | Meaning |', '|---|---|---|---|---|'];
  for (const { key, setting } of settingEntries(tree)) {
    if (!setting.inFile && setting.env.length === 0 && setting.flags.length === 0) continue;
    const env = setting.env.map((e) => `${code(e.name)}${e.format ? ` (${e.format})` : ''}`).join(', ');
    const flags = setting.flags
      .map((f) => `${code(f.arg === undefined ? f.name : `${f.name} ${f.arg}`)}${repeats(f) ? ` (${repeats(f)})` : ''}`)
      .join(', ');
    const meaning = [setting.help, setting.details].filter((t) => t !== undefined).join('. ');
    lines.push(
      `| ${setting.inFile ? code(key) : `(${key})`} | ${cell(env)} | ${cell(flags)} | ${cell(setting.defaultText)} | ${cell(`${meaning} (${setting.type}).`)} |`,
    );
  }
  return lines.join('\n');
}
