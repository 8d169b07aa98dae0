import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KINDS } from '../src/registry.js';
import { connectInMemory, testConfig, type Connected } from './helpers/client.js';

let conn: Connected;

beforeAll(async () => {
  conn = await connectInMemory(await testConfig());
});

afterAll(async () => {
  await conn.close();
});

describe('the server', () => {
  it("gives the client instructions with every kind's summary, dispatch tools and own sentences", () => {
    const text = conn.client.getInstructions() ?? '';
    expect(text).toContain('Working pattern:');
    for (const { kind, tools } of KINDS) {
      const dispatch = tools.filter((t) => t.dispatch).map((t) => t.name);
      expect(text).toContain(dispatch.length > 0 ? `${kind.summary} (${dispatch.join(', ')})` : kind.summary);
      for (const sentence of kind.instructions ?? []) expect(text).toContain(sentence);
    }
    expect(text).toContain('lmstudio_complete with reduce');
  });
});
