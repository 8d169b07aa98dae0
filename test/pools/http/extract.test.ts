import { describe, expect, it } from 'vitest';
import { applyExtract, validateExtract } from '../../../src/pools/http/extract.js';

const body = { items: [{ name: 'a', owner: { login: 'x' }, 'we/ird': 1, 'ti~lde': 2 }, { name: 'b' }], total: 2 };

describe('extract', () => {
  it('follows a JSON pointer, with RFC 6901 escapes', () => {
    expect(applyExtract(body, '/items/0/owner/login').value).toBe('x');
    expect(applyExtract(body, '/items/0/we~1ird').value).toBe(1);
    expect(applyExtract(body, '/items/0/ti~0lde').value).toBe(2);
    expect(applyExtract(body, '').value).toEqual(body);
    expect(applyExtract(body, '/items/5')).toEqual({ value: null, missing: '/items/5' });
    expect(applyExtract(body, '/items/01')).toEqual({ value: null, missing: '/items/01' });
  });

  it('keeps dotted field paths, per element for arrays, null where missing', () => {
    expect(applyExtract(body, ['total', 'items.1.name'])).toEqual({ value: { total: 2, 'items.1.name': 'b' } });
    expect(applyExtract(body, { pointer: '/items', fields: ['name', 'owner.login'] }).value).toEqual([
      { name: 'a', 'owner.login': 'x' },
      { name: 'b', 'owner.login': null },
    ]);
  });

  it('does not reach into inherited properties', () => {
    expect(applyExtract({}, '/constructor')).toEqual({ value: null, missing: '/constructor' });
    expect(applyExtract({}, ['toString']).value).toEqual({ toString: null });
  });

  it("keeps a field named __proto__ as a plain key, never as the row's prototype", () => {
    const parsed: unknown = JSON.parse('{"__proto__": {"polluted": true}, "name": "n"}');
    const row = applyExtract(parsed, ['__proto__', 'name', 'constructor']).value;
    expect(Object.keys(row as object)).toEqual(['__proto__', 'name', 'constructor']);
    expect(Object.getPrototypeOf(row)).toBeNull();
    expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toEqual({ polluted: true });
    expect(Object.getOwnPropertyDescriptor(row, 'constructor')?.value).toBeNull();
    expect(JSON.stringify(row)).toBe('{"__proto__":{"polluted":true},"name":"n","constructor":null}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('rejects a pointer without a leading slash and empty field lists', () => {
    expect(() => validateExtract('items/0')).toThrow(/JSON pointer/);
    expect(() => validateExtract([])).toThrow(/non-empty/);
    expect(() => validateExtract({ fields: [''] })).toThrow(/non-empty/);
    expect(() => validateExtract({ pointer: '/items', fields: ['name'] })).not.toThrow();
  });
});
