import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configHelp, configTable } from '../../src/config.js';
import { CORE_SETTINGS } from '../../src/config/core.js';
import { settingEntries } from '../../src/config/settings.js';
import { KINDS } from '../../src/registry.js';
import { repoRoot } from '../helpers/client.js';

const allSettings = [CORE_SETTINGS, ...KINDS.map(({ kind }) => kind.settings)].flatMap((tree) => settingEntries(tree));

describe('configuration docs made from the declarations', () => {
  it("the README's configuration table is the generated one (run `npm run docs` after changing a setting)", () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const begin = readme.indexOf('\n', readme.indexOf('<!-- settings:begin')) + 1;
    const end = readme.indexOf('<!-- settings:end -->');
    expect(readme.slice(begin, end).trim()).toBe(configTable());
  });

  it("--help and the table list every flag, env var and file key of every kind's settings", () => {
    const help = configHelp();
    const table = configTable();
    for (const { key, setting } of allSettings) {
      for (const flag of setting.flags) expect(help, key).toContain(flag.name);
      for (const env of setting.env) expect(table, key).toContain(env.name);
      if (setting.inFile) expect(table, key).toContain(`\`${key}\``);
    }
    // A derived value (the PATH workers are found on) is nobody's to set.
    expect(table).not.toContain('searchPath');
  });
});
