import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DashboardState } from './data.js';

/** How many pages may follow the dashboard at once, how long a page may leave what was sent unread, and how often an idle stream hears from the server. */
export interface StreamLimits {
  max: number;
  drainMs: number;
  heartbeatMs: number;
}

export const STREAM_LIMITS: StreamLimits = { max: 32, drainMs: 10_000, heartbeatMs: 15_000 };

/** A comment line: EventSource ignores it, but proxies and the socket see the stream alive. */
const HEARTBEAT = ': ping\n\n';

interface Stream {
  res: ServerResponse;
  /** Set while what was written waits in the socket: nothing more is written until it drains. */
  waiting?: NodeJS.Timeout;
  /** An event was skipped while it waited: the whole state follows once it drains. */
  behind: boolean;
}

/**
 * The open pages' event streams (Server-Sent Events), bounded: at most `max` at once (the next is
 * answered 503), and never more than one event buffered per page. A page that has not taken what
 * was sent (the socket's write answered false) skips the events meanwhile and gets the whole state
 * when it drains; one that does not drain within `drainMs` is dropped (its socket destroyed), so a
 * client that never reads costs a bounded amount of memory, not one event per change forever.
 */
export class EventStreams {
  private readonly streams = new Set<Stream>();
  private readonly limits: StreamLimits;
  /** The whole state as an event, for a page that opens or catches up (undefined before the first poll). */
  private readonly current: () => string | undefined;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(current: () => string | undefined, limits: Partial<StreamLimits> = {}) {
    this.current = current;
    this.limits = { ...STREAM_LIMITS, ...limits };
    this.heartbeat = setInterval(() => {
      for (const stream of this.streams) if (!stream.waiting) this.write(stream, HEARTBEAT);
    }, this.limits.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Open streams, and the bytes written to them that their sockets have not taken yet. */
  stats(): { open: number; buffered: number } {
    let buffered = 0;
    for (const stream of this.streams) buffered += stream.res.writableLength;
    return { open: this.streams.size, buffered };
  }

  /** Answers GET /api/events: a stream that follows the state, or 503 when `max` are open. */
  open(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    if (this.streams.size >= this.limits.max) {
      res.writeHead(503, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Retry-After': '10' });
      res.end(
        `Too many live pages: this dashboard follows at most ${this.limits.max} at once. Close some of its tabs, then reload.\n`,
      );
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    const stream: Stream = { res, behind: false };
    this.streams.add(stream);
    const forget = (): void => {
      clearTimeout(stream.waiting);
      this.streams.delete(stream);
    };
    req.on('close', forget);
    res.on('close', forget);
    this.write(stream, `retry: 1000\n\n${this.current() ?? ''}`);
  }

  /** Sends an event to every page; one still waiting on its socket gets the whole state later instead. */
  send(event: string): void {
    for (const stream of this.streams) {
      if (stream.waiting) stream.behind = true;
      else this.write(stream, event);
    }
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const stream of this.streams) {
      clearTimeout(stream.waiting);
      stream.res.end();
    }
    this.streams.clear();
  }

  private write(stream: Stream, text: string): void {
    if (stream.res.write(text)) return;
    stream.waiting = setTimeout(() => {
      // It has read nothing for drainMs: dropped, not buffered for (EventSource reconnects a live page).
      this.streams.delete(stream);
      stream.res.destroy();
    }, this.limits.drainMs);
    stream.res.once('drain', () => {
      clearTimeout(stream.waiting);
      stream.waiting = undefined;
      if (!stream.behind || !this.streams.has(stream)) return;
      stream.behind = false;
      const state = this.current();
      if (state !== undefined) this.write(stream, state);
    });
  }
}

/** The whole state as an event; `generated_at` says when it was sent, so the page can set its clock by it. */
export function stateEvent(state: DashboardState, now: number): string {
  return `event: state\ndata: ${JSON.stringify({ ...state, generated_at: new Date(now).toISOString() })}\n\n`;
}

/** The running servers and their live cards alone: what changes every second, without the jobs. */
export function liveEvent(state: DashboardState, now: number): string {
  const { servers, capacity } = state;
  return `event: live\ndata: ${JSON.stringify({ servers, capacity, generated_at: new Date(now).toISOString() })}\n\n`;
}

/**
 * What a person sees of the state, in two parts: the jobs (without their elapsed time and ETA,
 * which the page counts on from the timestamps by itself, so a running job with nothing new sends
 * nothing) and the live servers with their cards (without the heartbeat times the page never shows).
 */
export function seenKeys(state: DashboardState): { jobs: string; live: string } {
  const jobs = state.jobs.map(({ elapsed_ms: _elapsed, eta_ms: _eta, ...seen }) => seen);
  const servers = state.servers.map(({ heartbeat_at: _beat, ...seen }) => seen);
  return {
    jobs: JSON.stringify({ dir: state.state_dir, note: state.state_dir_note, jobs }),
    live: JSON.stringify({ servers, capacity: state.capacity }),
  };
}
