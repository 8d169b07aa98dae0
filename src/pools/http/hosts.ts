import { MonitorError } from '../../errors.js';

/**
 * One entry of `http.allowHosts`: `host`, `host:port`, `*.domain` or `*.domain:port`.
 * Without a port only the scheme's default port (80 for http, 443 for https) matches, so allowing
 * `example.com` never opens `example.com:6379`. `*.domain` matches every subdomain at any depth,
 * not `domain` itself. IPv6 literals are written in brackets: `[::1]:8080`.
 */
export interface HostPattern {
  /** The entry as written, for messages. */
  source: string;
  /** Lower-case host as the URL parser normalises it (punycode, canonical IPv4/IPv6). */
  host: string;
  wildcard: boolean;
  /** undefined = the scheme's default port. */
  port: number | undefined;
}

/** Throws INVALID_INPUT naming the entry when it is not `[*.]host[:port]`. */
export function parseHostPattern(entry: string): HostPattern {
  const bad = (why: string): MonitorError =>
    new MonitorError(
      'INVALID_INPUT',
      `Expected an http allowHosts entry like "api.github.com", "*.example.com" or "127.0.0.1:8080", got "${entry}" (${why}).`,
      {
        hint: 'Write host names without a scheme or path; add :port for a non-default port; a leading "*." allows subdomains.',
      },
    );
  const trimmed = entry.trim();
  if (trimmed.includes('://') || /[/?#@\s]/.test(trimmed)) throw bad('no scheme, path, user or spaces');
  const wildcard = trimmed.startsWith('*.');
  const rest = wildcard ? trimmed.slice(2) : trimmed;
  if (rest.length === 0 || rest.includes('*')) throw bad('"*" may only lead the entry, as "*.domain"');
  let url: URL;
  try {
    url = new URL(`http://${rest}`);
  } catch {
    throw bad('not a valid host');
  }
  const host = stripTrailingDot(url.hostname);
  if (host.length === 0) throw bad('no host');
  // The URL parser drops an explicit :80 for http; read the port from the text so ":80" still counts.
  const portMatch = /:(\d+)$/.exec(rest);
  const port = portMatch ? Number(portMatch[1]) : undefined;
  if (port !== undefined && (port < 1 || port > 65535)) throw bad('port out of range');
  if (wildcard && (host.startsWith('[') || /^\d+(\.\d+){3}$/.test(host))) throw bad('a wildcard needs a domain name');
  return { source: entry, host, wildcard, port };
}

export function parseHostPatterns(entries: readonly string[]): HostPattern[] {
  return entries.map(parseHostPattern);
}

/** The port a URL really connects to. */
export function effectivePort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** `host:port` as used for per-host limits and messages (IPv6 keeps its brackets). */
export function hostKey(url: URL): string {
  return `${stripTrailingDot(url.hostname)}:${effectivePort(url)}`;
}

export function matchesHost(url: URL, pattern: HostPattern): boolean {
  const host = stripTrailingDot(url.hostname.toLowerCase());
  const port = effectivePort(url);
  const defaultPort = url.protocol === 'https:' ? 443 : 80;
  if ((pattern.port ?? defaultPort) !== port) return false;
  return pattern.wildcard ? host.endsWith(`.${pattern.host}`) : host === pattern.host;
}

export function isHostAllowed(url: URL, patterns: readonly HostPattern[]): boolean {
  return patterns.some((p) => matchesHost(url, p));
}

/** The allowlist entry that would admit this URL: `host` on default ports, `host:port` otherwise. */
export function allowEntryFor(url: URL): string {
  const host = stripTrailingDot(url.hostname);
  return url.port === '' ? host : `${host}:${url.port}`;
}

/** Where to add a host, worded for the model and for the user it will ask. */
export function allowHostHint(entries: readonly string[]): string {
  const list = entries.join(', ');
  const first = entries[0] ?? 'HOST';
  return (
    `Only hosts on the user's allowlist can be called, and ${list} ${entries.length === 1 ? 'is' : 'are'} not on it. ` +
    `Ask the user to allow ${entries.length === 1 ? 'it' : 'them'} and restart the server: start it with --http-allow-host ${first} ` +
    `(repeatable), or set MONITOR_HTTP_ALLOW_HOSTS=${entries.join(',')}, or add "http": {"allowHosts": [${entries.map((e) => JSON.stringify(e)).join(', ')}]} to the config file.`
  );
}

function stripTrailingDot(host: string): string {
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
