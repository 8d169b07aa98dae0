import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { CONTROL_TIMEOUT_MS } from '../live/publisher.js';
import type { Logger } from '../log.js';
import { ControlFiles, type ControlRequest } from '../store/control.js';
import { StateLayout } from '../store/layout.js';
import { TranscriptRefused } from '../store/transcript.js';
import type { DashboardData, DashboardState } from './data.js';
import { EventStreams, liveEvent, seenKeys, stateEvent, type StreamLimits } from './push.js';

/** How often the state directory is looked at for changes pushed to open pages. */
const POLL_MS = 250;
/**
 * The cookie that stands for the token, named per port: browsers do not scope cookies by port, so
 * one name would make two dashboards on one host overwrite each other's. It still reaches every
 * service on this host whatever its port (no cookie attribute prevents that); what it opens is
 * this dashboard alone, whose token it is (Jupyter names its login cookie after host and port alike).
 */
const COOKIE_PREFIX = 'monitor_dashboard_';
/** Longer request targets are refused (414) before any parsing. */
const MAX_URL = 4096;

export interface DashboardOptions {
  data: DashboardData;
  stateDir: string;
  host: string;
  port: number;
  /** The page's files (index.html, app.js, app.css) and uPlot's, served from the package. */
  assets: Readonly<Record<string, string>>;
  log: Logger;
  /** More Host names it answers to (--allow-host), beside its own address (and this machine's when bound to all). */
  allowHosts?: readonly string[];
  /** Given by tests; otherwise 32 random bytes. */
  token?: string;
  now?: () => number;
  /** Given by tests: the event streams' bounds (STREAM_LIMITS otherwise) and the poll interval. */
  limits?: Partial<StreamLimits>;
  pollMs?: number;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** No script or style but the package's own, no framing, no plugins, nothing sent elsewhere. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * The live dashboard: a small HTTP server on loopback. Every request needs the token (in the URL
 * the first time, then an HttpOnly SameSite=Strict cookie), a Host naming this server (against DNS
 * rebinding) and, when it carries one, a same Origin (a POST must); changes reach open pages as
 * Server-Sent Events. Cancel and resume go to the server running the job through the state
 * directory (see LivePublisher), never run here.
 */
export class Dashboard {
  readonly token: string;
  private readonly options: DashboardOptions;
  private readonly tokenDigest: Buffer;
  private server: Server | undefined;
  private readonly streams: EventStreams;
  /** The page's files by name (a Map: a name such as `__proto__` is just not there). */
  private readonly assets: ReadonlyMap<string, string>;
  private timer: NodeJS.Timeout | undefined;
  private seen = { jobs: '', live: '' };
  private lastState: DashboardState | undefined;
  private polling: Promise<void> | undefined;
  private pollError: string | undefined;
  private port = 0;
  private hosts = new Set<string>();

  constructor(options: DashboardOptions) {
    this.options = options;
    this.token = options.token ?? randomBytes(32).toString('base64url');
    this.tokenDigest = digest(this.token);
    this.assets = new Map(Object.entries(options.assets));
    for (const name of options.allowHosts ?? []) hostName(name);
    this.streams = new EventStreams(() => this.lastState && stateEvent(this.lastState, this.now()), options.limits);
  }

  /** The URL to open on this machine (bound to all addresses: by loopback). */
  get url(): string {
    const host = isWildcard(this.options.host) ? (this.options.host === '::' ? '::1' : '127.0.0.1') : this.options.host;
    return `http://${hostForUrl(host)}:${this.port}/?token=${this.token}`;
  }

  /** The Host headers it answers to (`name:port`): anything else is refused (DNS rebinding). */
  get allowedHosts(): string[] {
    return [...this.hosts];
  }

  /** Open event streams and the bytes they have not taken yet (what bounds them, as tests see it). */
  streamStats(): { open: number; buffered: number } {
    return this.streams.stats();
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        this.options.log.warn(`dashboard: ${req.method ?? ''} ${pathOf(req)}: ${String(error)}`);
        if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'Internal error.');
        else res.end();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.hosts = hostsAllowed(this.options.host, this.port, this.options.allowHosts ?? []);
    await this.pollSafely();
    this.timer = setInterval(() => this.refresh(), this.options.pollMs ?? POLL_MS);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
    this.streams.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }

  /**
   * Reads the state directory; open pages get what changed that a person sees: the whole state when
   * a job did, the live servers' cards alone when only they did, nothing when only time passed.
   */
  private async poll(): Promise<void> {
    const now = this.now();
    const state = await this.options.data.snapshot(now);
    this.lastState = state;
    const seen = seenKeys(state);
    if (seen.jobs !== this.seen.jobs) this.streams.send(stateEvent(state, now));
    else if (seen.live !== this.seen.live) this.streams.send(liveEvent(state, now));
    this.seen = seen;
  }

  /** A poll now, unless one runs: one at a time, so an older state is never sent after a newer one. */
  private refresh(): void {
    this.polling ??= this.pollSafely().finally(() => {
      this.polling = undefined;
    });
  }

  /** A poll whose failure is logged (once while it fails alike) and tried again next time, never thrown. */
  private async pollSafely(): Promise<void> {
    try {
      await this.poll();
      this.pollError = undefined;
    } catch (error) {
      const message = String(error);
      if (message !== this.pollError) this.options.log.warn(`dashboard: reading ${this.options.stateDir}: ${message}`);
      this.pollError = message;
    }
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refused = this.refusal(req);
    if (refused) {
      send(res, refused.status, 'text/plain; charset=utf-8', `${refused.message}\n`);
      return;
    }
    const url = parseTarget(req.url);
    if (typeof url === 'string') return send(res, url === 'long' ? 414 : 400, 'text/plain; charset=utf-8', BAD[url]);
    const route = url.pathname;
    if (req.method === 'GET' && route === '/') {
      // The token moves from the URL into a cookie the browser sends only to this page's own requests.
      res.setHeader('Set-Cookie', `${COOKIE_PREFIX}${this.port}=${this.token}; HttpOnly; SameSite=Strict; Path=/`);
      return this.asset(res, 'index.html');
    }
    if (req.method === 'GET' && /^\/assets\/[\w.-]+$/.test(route))
      return this.asset(res, route.slice('/assets/'.length));
    if (req.method === 'GET' && route === '/api/jobs')
      return sendJson(res, 200, this.lastState ?? (await this.options.data.snapshot(this.now())));
    if (req.method === 'GET' && route === '/api/events') return this.streams.open(req, res, securityHeaders());
    const transcript = /^\/api\/jobs\/(job_[A-Za-z0-9_-]{22})\/tasks\/(\d{1,9})\/transcript$/.exec(route);
    if (req.method === 'GET' && transcript?.[1] !== undefined)
      return this.transcript(res, transcript[1], Number(transcript[2]));
    const job = /^\/api\/jobs\/(job_[A-Za-z0-9_-]{22})(\/(cancel|resume))?$/.exec(route);
    if (job?.[1] !== undefined) {
      const jobId = job[1];
      if (req.method === 'GET' && job[3] === undefined) {
        const offset = Math.max(0, Number(url.searchParams.get('offset') ?? 0) || 0);
        const only = url.searchParams.get('only') === 'failed' ? 'failed' : undefined;
        const detail = await this.options.data.tasks(jobId, offset, 200, only);
        return detail ? sendJson(res, 200, detail) : sendJson(res, 404, { error: `No job ${jobId}.` });
      }
      if (req.method === 'POST' && job[3] !== undefined)
        return this.control(res, {
          action: job[3] as ControlRequest['action'],
          job_id: jobId,
          at: new Date(this.now()).toISOString(),
        });
    }
    send(res, 404, 'text/plain; charset=utf-8', 'Not found.\n');
  }

  /** Why a request is refused: no token, a foreign Host (DNS rebinding) or Origin (another site's page). */
  private refusal(req: IncomingMessage): { status: number; message: string } | undefined {
    const host = req.headers.host ?? '';
    if (!this.hosts.has(host.toLowerCase()))
      return { status: 403, message: 'Refused: this dashboard answers only to its own address (Host header).' };
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}`)
      return { status: 403, message: 'Refused: a request from another origin.' };
    // A state-changing request must say where it comes from.
    if (req.method !== 'GET' && req.method !== 'HEAD' && origin === undefined)
      return { status: 403, message: 'Refused: a POST without an Origin header.' };
    if (!this.tokenMatches(tokenOf(req, `${COOKIE_PREFIX}${this.port}`)))
      return { status: 401, message: 'Refused: open the dashboard with the URL it printed (it carries the token).' };
    return undefined;
  }

  private tokenMatches(given: string | undefined): boolean {
    // Digests have one length, so the comparison takes the same time whatever was given.
    return given !== undefined && timingSafeEqual(digest(given), this.tokenDigest);
  }

  private async asset(res: ServerResponse, name: string): Promise<void> {
    const file = this.assets.get(name);
    if (file === undefined) return send(res, 404, 'text/plain; charset=utf-8', 'Not found.\n');
    const body = await readFile(file);
    send(res, 200, CONTENT_TYPES[path.extname(name)] ?? 'application/octet-stream', body);
  }

  /** The end of a task's transcript, its lines parsed (the page renders them as text). */
  private async transcript(res: ServerResponse, jobId: string, index: number): Promise<void> {
    try {
      const tail = await this.options.data.transcript(jobId, index);
      if (!tail) return sendJson(res, 404, { error: `No transcript for task ${index} of ${jobId}.` });
      return sendJson(res, 200, { job_id: jobId, index, ...tail });
    } catch (error) {
      if (error instanceof TranscriptRefused) return sendJson(res, 403, { error: `Refused: ${error.message}` });
      throw error;
    }
  }

  /** Hands a cancel or resume to the server that runs the job, and waits (bounded) for its answer. */
  private async control(res: ServerResponse, request: ControlRequest): Promise<void> {
    if (!StateLayout.isJobId(request.job_id)) return sendJson(res, 400, { ok: false, message: 'Not a job id.' });
    const control = new ControlFiles(this.options.stateDir, this.options.log);
    const files = await control.ask(request, Date.now());
    for (const deadline = Date.now() + CONTROL_TIMEOUT_MS; Date.now() < deadline;) {
      const reply = await control.reply(files.reply);
      if (reply) {
        await rm(files.reply, { force: true });
        this.refresh();
        return sendJson(res, reply.ok ? 200 : 409, reply);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Nobody took it: withdrawn, so no server acts on it later by surprise.
    await rm(files.request, { force: true });
    return sendJson(res, 503, {
      ok: false,
      message: `No running monitor-mcp server on ${this.options.stateDir} took the ${request.action} within ${CONTROL_TIMEOUT_MS / 1000} s. A job is cancelled or resumed by a server on the same state directory: start a client session (Claude Code, Claude Desktop), or use resume_job or cancel_job there.`,
    });
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function tokenOf(req: IncomingMessage, cookie: string): string | undefined {
  const header = req.headers['x-monitor-token'];
  if (typeof header === 'string') return header;
  const url = parseTarget(req.url);
  const query = typeof url === 'string' ? null : url.searchParams.get('token');
  if (query !== null) return query;
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === cookie) return value.join('=');
  }
  return undefined;
}

const BAD = {
  long: `Refused: the request's URL is longer than ${MAX_URL} characters.\n`,
  malformed: "Bad request: the request's URL cannot be read (a path such as /api/jobs is expected).\n",
  encoding: "Bad request: the request's URL has a broken %-escape.\n",
} as const;

/** The request's target as a URL, or why it is refused: too long, not a path, a broken %-escape. */
function parseTarget(target: string | undefined): URL | keyof typeof BAD {
  const text = target ?? '/';
  if (text.length > MAX_URL) return 'long';
  // Only origin-form (`/path?query`): `//host`, `http://…` and the like are no request for this page.
  if (!text.startsWith('/') || text.startsWith('//')) return 'malformed';
  let url: URL;
  try {
    url = new URL(text, 'http://dashboard.invalid');
    decodeURIComponent(url.pathname);
  } catch (error) {
    return error instanceof URIError ? 'encoding' : 'malformed';
  }
  return url;
}

/** Host names it answers to, each with its port: its own address, loopback's names, every address of this machine when bound to all, and `extra`. */
function hostsAllowed(host: string, port: number, extra: readonly string[]): Set<string> {
  const names = new Set([hostForUrl(host).toLowerCase(), ...extra.map((name) => hostName(name).toLowerCase())]);
  if (isLoopback(host) || isWildcard(host)) for (const name of ['127.0.0.1', 'localhost', '[::1]']) names.add(name);
  if (isWildcard(host))
    for (const address of Object.values(networkInterfaces()).flat())
      // An IPv4 wildcard takes IPv4 connections alone; `::` takes both.
      if (address && (host === '::' || address.family === 'IPv4')) names.add(hostForUrl(address.address).toLowerCase());
  return new Set([...names].map((name) => `${name}:${port}`));
}

/** An --allow-host value as a Host header names it: a host name or an address (an IPv6 one bracketed), no port. */
function hostName(name: string): string {
  if (isIPv6(name)) return `[${name}]`;
  if (/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(name) || /^\[[0-9A-Fa-f:.]+\]$/.test(name)) return name;
  throw new Error(
    `--allow-host takes a host name or address as the browser's address bar shows it, without a port or scheme (the dashboard adds its port), got ${JSON.stringify(name)}.`,
  );
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

function pathOf(req: IncomingMessage): string {
  // Never the query: it may carry the token.
  return (req.url ?? '/').split('?')[0] ?? '/';
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function hostForUrl(host: string): string {
  return isIPv6(host) ? `[${host}]` : host;
}

function securityHeaders(): Record<string, string> {
  return {
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
    'Cross-Origin-Resource-Policy': 'same-origin',
  };
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { ...securityHeaders(), 'Content-Type': type });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));
}
