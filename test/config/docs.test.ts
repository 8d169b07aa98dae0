import { describe, expect, it } from 'vitest';
import { configHelp, configTable, KINDS } from '../../src/registry.js';
import { CORE_SETTINGS } from '../../src/config/core.js';
import { settingEntries } from '../../src/config/settings.js';

const allSettings = [CORE_SETTINGS, ...KINDS.map(({ kind }) => kind.settings)].flatMap((tree) => settingEntries(tree));

// That docs/configuration.md holds the table as generated is test/docs.test.ts's check.
describe('configuration docs made from the declarations', () => {
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
