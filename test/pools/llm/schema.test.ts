import { describe, expect, it } from 'vitest';
import { MonitorError } from '../../../src/errors.js';
import { isStrictCompatible, SchemaValidator } from '../../../src/pools/llm/schema.js';

const schema = { type: 'object', properties: { risk: { type: 'integer', minimum: 1 } }, required: ['risk'] };

describe('SchemaValidator', () => {
  const validator = new SchemaValidator();

  it.each([
    ['bare JSON', '{"risk": 2}'],
    ['a ```json fence', '```json\n{"risk": 2}\n```'],
    ['a bare ``` fence', '```\n{"risk": 2}\n```'],
    ['a fence with spaces around it', '  ```JSON\n{"risk": 2}```  '],
  ])('accepts %s', (_what, text) => {
    expect(validator.check(schema, text)).toEqual({ ok: true, value: { risk: 2 } });
  });

  it('says why an answer does not match: not JSON, or against the schema', () => {
    const notJson = validator.check(schema, 'Sure! Here it is: {"risk": 2}');
    expect(notJson.ok).toBe(false);
    if (!notJson.ok) expect(notJson.error).toMatch(/not valid JSON/);
    const wrong = validator.check(schema, '```json\n{"risk": 0}\n```');
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.error).toMatch(/risk|minimum|>= 1/);
  });

  it('refuses a schema that does not compile, as INVALID_INPUT', () => {
    expect(() => validator.compile({ type: 'nonsense' })).toThrow(MonitorError);
    expect(() => validator.compile({ type: 'nonsense' })).toThrow(/json_schema is not a valid JSON schema/);
  });
});

describe('isStrictCompatible', () => {
  const strictObject = (properties: Record<string, unknown>): Record<string, unknown> => ({
    type: 'object',
    properties,
    required: Object.keys(properties),
    additionalProperties: false,
  });

  it.each([
    ['a closed object with every property required', strictObject({ a: { type: 'string' } }), true],
    [
      'nested closed objects in properties and items',
      strictObject({ list: { type: 'array', items: strictObject({ n: { type: 'integer' } }) } }),
      true,
    ],
    [
      'an object without additionalProperties: false',
      { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] },
      false,
    ],
    [
      'an optional property',
      {
        type: 'object',
        properties: { a: { type: 'string' }, b: { type: 'string' } },
        required: ['a'],
        additionalProperties: false,
      },
      false,
    ],
    [
      'an open object deep inside',
      strictObject({ inner: { type: 'object', properties: { x: { type: 'string' } }, required: ['x'] } }),
      false,
    ],
    [
      'an open object in anyOf',
      strictObject({ v: { anyOf: [{ type: 'string' }, { type: 'object', properties: {} }] } }),
      false,
    ],
    ['a root that is not an object', { type: 'array', items: { type: 'string' } }, false],
  ])('%s → %s', (_what, candidate, expected) => {
    expect(isStrictCompatible(candidate)).toBe(expected);
  });
});
