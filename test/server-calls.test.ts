import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInMemory, testConfig, textOf, type Connected } from './helpers/client.js';

let conn: Connected;

beforeAll(async () => {
  conn = await connectInMemory(await testConfig());
});

afterAll(async () => {
  await conn.close();
});

describe('tool calls', () => {
  it('answers an unknown tool with isError text naming the nearest tool and every tool', async () => {
    const reply = await conn.call('colect_results', {});
    expect(reply.isError).toBe(true);
    const text = textOf(reply);
    expect(text).toMatch(/^INVALID_INPUT: There is no tool "colect_results"\./);
    expect(text).toContain('Did you mean collect_results?');
    expect(text).toContain('list_jobs');
  });

  it('answers arguments that do not parse, and errors the tool throws, with isError text', async () => {
    const bad = await conn.call('list_jobs', { state: 'sleeping' });
    expect(bad.isError).toBe(true);
    expect(textOf(bad)).toMatch(/^INVALID_INPUT: /);
    const missing = await conn.call('cancel_job', { job_id: 'job_AAAAAAAAAAAAAAAAAAAAAA' });
    expect(missing.isError).toBe(true);
    expect(textOf(missing)).toMatch(/^[A-Z_]+: /);
  });

  it('answers a good call with its text and structured content', async () => {
    const reply = await conn.call('list_jobs', {});
    expect(reply.isError).toBeFalsy();
    expect(reply.content[0]?.type).toBe('text');
    expect(reply.structuredContent).toMatchObject({ jobs: [] });
  });
});
