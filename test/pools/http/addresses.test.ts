import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { checkedLookup, checkLiteralHost, nonPublicReason, type Resolver } from '../../../src/pools/http/addresses.js';

describe('address rules', () => {
  it('classifies loopback, private, link-local, CGNAT, unspecified and multicast as non-public', () => {
    const cases: Array<[string, string]> = [
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'shared (CGNAT)'],
      ['0.0.0.0', 'unspecified'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'reserved'],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fd12:3456::1', 'unique-local'],
      ['fe80::1', 'link-local'],
      ['ff02::1', 'multicast'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::ffff:10.0.0.1', 'private'],
      ['64:ff9b::169.254.169.254', 'link-local'],
      ['2002:c0a8:0101::1', 'private'],
    ];
    for (const [address, reason] of cases) expect(nonPublicReason(address), address).toBe(reason);
  });

  it('lets public addresses through', () => {
    for (const address of [
      '8.8.8.8',
      '1.1.1.1',
      '172.32.0.1',
      '100.128.0.1',
      '2606:4700:4700::1111',
      '::ffff:8.8.8.8',
    ]) {
      expect(nonPublicReason(address), address).toBeUndefined();
    }
  });

  it('refuses IP-literal hosts unless private addresses are allowed', () => {
    expect(() => checkLiteralHost('127.0.0.1', false)).toThrow(/loopback/);
    expect(() => checkLiteralHost('[::1]', false)).toThrow(/loopback/);
    expect(() => checkLiteralHost('127.0.0.1', true)).not.toThrow();
    expect(() => checkLiteralHost('8.8.8.8', false)).not.toThrow();
    expect(() => checkLiteralHost('example.com', false)).not.toThrow();
  });

  it('the connect-time lookup refuses a name when any of its addresses is non-public, and hands over exactly the checked ones', async () => {
    const answers: Record<string, LookupAddress[]> = {
      'public.test': [{ address: '93.184.216.34', family: 4 }],
      'mixed.test': [
        { address: '93.184.216.34', family: 4 },
        { address: '10.0.0.7', family: 4 },
      ],
    };
    // A resolver with fixed answers stands in for DNS, which this machine cannot reach.
    const resolver: Resolver = (hostname, _options, callback) => callback(null, answers[hostname] ?? []);
    const call = (allowPrivate: boolean, host: string, all: boolean): Promise<unknown> =>
      new Promise((resolve, reject) => {
        checkedLookup(allowPrivate, resolver)(host, { all }, (error, address, family) =>
          error ? reject(error) : resolve(all ? address : [address, family]),
        );
      });
    await expect(call(false, 'public.test', true)).resolves.toEqual([{ address: '93.184.216.34', family: 4 }]);
    await expect(call(false, 'public.test', false)).resolves.toEqual(['93.184.216.34', 4]);
    await expect(call(false, 'mixed.test', true)).rejects.toMatchObject({
      code: 'ADDRESS_NOT_ALLOWED',
      message: expect.stringContaining('mixed.test (10.0.0.7)'),
    });
    await expect(call(true, 'mixed.test', true)).resolves.toHaveLength(2);
    await expect(call(false, 'nothing.test', true)).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });
});
