import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach, failure } from '../../helpers/cleanup.js';
import { endpoint, endpointsRig } from './endpoints-rig.js';

const cleanups = cleanupsAfterEach();
const { double, service } = endpointsRig(cleanups);

describe('model resolution', () => {
  it('takes the only model of a single-model server, refuses to guess among several, and uses the loaded LLM of LM Studio', async () => {
    const single = await double({ flavor: 'openai', models: [{ id: 'tiny' }] });
    expect(
      (await (await service([endpoint('s', single.url, { flavor: 'openai' })])).resolveModel(undefined)).model,
    ).toBe('tiny');

    const several = await double({ flavor: 'openai', models: [{ id: 'a' }, { id: 'b' }] });
    const ambiguous = await failure(
      (await service([endpoint('m', several.url, { flavor: 'openai' })])).resolveModel(undefined),
    );
    expect(ambiguous.code).toBe('INVALID_INPUT');
    expect(ambiguous.message).toMatch(/Several models are available and none is set as default: a \(m\), b \(m\)/);

    const lm = await double({
      models: [
        { id: 'cold', state: 'not-loaded' },
        { id: 'warm', state: 'loaded' },
      ],
    });
    expect((await (await service([endpoint('l', lm.url)])).resolveModel(undefined)).model).toBe('warm');
  });

  it('refuses an ambiguous short name, naming the ids it could be', async () => {
    const d = await double({ flavor: 'openai', models: [{ id: 'qwen3:8b' }, { id: 'qwen3:30b' }] });
    const llm = await service([endpoint('o', d.url, { flavor: 'openai' })]);
    const error = await failure(llm.resolveModel('qwen3'));
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toContain('qwen3:8b, qwen3:30b (o)');
    expect((await llm.candidatesFor('qwen3:30b', 'cached')).served).toEqual({ o: 'qwen3:30b' });
  });
});
