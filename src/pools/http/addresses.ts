import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, isIPv4 } from 'node:net';
import { HttpError } from './errors.js';

/** Ranges that reach this machine, its networks or nothing public; refused unless private addresses are allowed. */
const IPV4_RANGES: ReadonlyArray<[string, number, string]> = [
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (CGNAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];

const IPV6_RANGES: ReadonlyArray<[string, number, string]> = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard'],
  ['2001:db8::', 32, 'documentation'],
  ['fc00::', 7, 'unique-local'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
];

const blocks = new Map<string, BlockList>();
for (const [address, prefix, reason] of IPV4_RANGES) addRange(address, prefix, 'ipv4', reason);
for (const [address, prefix, reason] of IPV6_RANGES) addRange(address, prefix, 'ipv6', reason);

function addRange(address: string, prefix: number, family: 'ipv4' | 'ipv6', reason: string): void {
  let list = blocks.get(reason);
  if (!list) {
    list = new BlockList();
    blocks.set(reason, list);
  }
  list.addSubnet(address, prefix, family);
}

/**
 * Why `address` is not a public unicast address (e.g. "loopback"), or undefined when it is.
 * IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that
 * address, so `::ffff:127.0.0.1` is loopback too.
 */
export function nonPublicReason(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0) return 'not an IP address';
  if (family === 6) {
    const embedded = embeddedIPv4(address);
    if (embedded !== undefined) return nonPublicReason(embedded);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const [reason, list] of blocks) if (list.check(address, type)) return reason;
  return undefined;
}

/** The IPv4 address inside ::ffff:a.b.c.d, ::a.b.c.d, 64:ff9b::a.b.c.d and 2002:AABB:CCDD::, if any. */
function embeddedIPv4(address: string): string | undefined {
  const words = expandIPv6(address);
  if (!words) return undefined;
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  const zeros = (from: number, to: number): boolean => words.slice(from, to).every((w) => w === 0);
  const [w0 = 0, w1 = 0, w5 = 0, w6 = 0, w7 = 0] = [words[0], words[1], words[5], words[6], words[7]];
  if (zeros(0, 5) && w5 === 0xffff) return v4(w6, w7);
  if (zeros(0, 6) && (w6 !== 0 || w7 > 1)) return v4(w6, w7);
  if (w0 === 0x64 && w1 === 0xff9b && zeros(2, 6)) return v4(w6, w7);
  if (w0 === 0x2002) return v4(words[1] ?? 0, words[2] ?? 0);
  return undefined;
}

/** Eight 16-bit words, or undefined for text that is not IPv6. */
function expandIPv6(address: string): number[] | undefined {
  let text = address.toLowerCase();
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  // A trailing dotted IPv4 part stands for the last two words.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (isIPv4(tail)) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((w) => parseInt(w, 16)));
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const words = [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...rest];
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}

export function addressNotAllowed(host: string, address: string, reason: string): HttpError {
  const shown = host === address ? address : `${host} (${address})`;
  return new HttpError(
    'ADDRESS_NOT_ALLOWED',
    `${shown} is a ${reason} address; http_batch only calls public addresses unless private ones are allowed.`,
    {
      hint: 'If the user really wants this (a local or internal service), ask them to start the server with --http-allow-private, or set MONITOR_HTTP_ALLOW_PRIVATE=1, or "http": {"allowPrivateAddresses": true} in the config file. The host must still be on the allowlist.',
    },
  );
}

/** Throws ADDRESS_NOT_ALLOWED for an IP-literal host in a non-public range (names are checked at connect time). */
export function checkLiteralHost(hostname: string, allowPrivate: boolean): void {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (allowPrivate || isIP(bare) === 0) return;
  const reason = nonPublicReason(bare);
  if (reason !== undefined) throw addressNotAllowed(hostname, bare, reason);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
/** The form of dns.lookup used here (all addresses at once); tests pass fixed answers. */
export type Resolver = (
  hostname: string,
  options: { all: true; family: number; verbatim: boolean },
  callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;
export type LookupFunction = (
  hostname: string,
  options: { all?: boolean; family?: number | string },
  callback: LookupCallback,
) => void;

/**
 * A `lookup` for net/tls.connect that resolves the name and refuses it when any address it
 * resolves to is not public. The socket connects to exactly the addresses checked here, so a
 * name cannot pass the check with one answer and connect with another (DNS rebinding).
 */
export function checkedLookup(allowPrivate: boolean, resolve: Resolver = dnsLookup): LookupFunction {
  return (hostname, options, callback) => {
    const family =
      options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
    resolve(hostname, { all: true, family, verbatim: true }, (error, addresses) => {
      if (error) {
        callback(error, []);
        return;
      }
      if (addresses.length === 0) {
        callback(Object.assign(new Error(`${hostname} did not resolve to any address.`), { code: 'ENOTFOUND' }), []);
        return;
      }
      if (!allowPrivate) {
        for (const { address } of addresses) {
          const reason = nonPublicReason(address);
          if (reason !== undefined) {
            callback(addressNotAllowed(hostname, address, reason), []);
            return;
          }
        }
      }
      const first = addresses[0];
      if (options.all) callback(null, addresses);
      else if (first) callback(null, first.address, first.family);
    });
  };
}
