import { describe, expect, it } from 'vitest';
import { describeKinds, KINDS } from '../src/registry.js';
import { toolTable } from '../src/server-tools.js';
import { testConfig } from './helpers/client.js';

describe('the tool table', () => {
  it("holds every kind's tools with that kind's name, then the job tools, each listed once with a JSON schema", async () => {
    const config = await testConfig();
    const kinds = describeKinds(config);
    const table = toolTable(kinds);

    const kindTools = KINDS.flatMap(({ tools }) => tools.map((t) => t.name));
    const names = table.listed.map((t) => t.name);
    expect(names.slice(0, kindTools.length)).toEqual(kindTools);
    expect(names.slice(kindTools.length)).toEqual(['collect_results', 'list_jobs', 'cancel_job', 'resume_job']);
    expect(new Set(names).size).toBe(names.length);
    for (const kind of kinds) for (const tool of kind.tools) expect(table.byName.get(tool.name)?.kind).toBe(kind.name);
    expect(table.byName.get('collect_results')?.kind).toBeUndefined();
    for (const listed of table.listed) {
      expect(listed.inputSchema.type).toBe('object');
      expect(listed.description?.length).toBeGreaterThan(0);
    }
  });
});
