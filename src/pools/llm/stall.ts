import type { LiveCard } from '../kind.js';
import { LlmError } from './errors.js';

/** Silence shown ("no tokens from X for N s") from this long, or half the stall limit when that is shorter. */
export const STALL_NOTE_MS = 10_000;

/** What the request path tells a watch as a streamed answer goes (client.ts, stream.ts). */
export interface StreamWatch {
  /** The request is sent: the silence starts now. */
  arm(): void;
  /** An event of the answer came. */
  touch(): void;
  /** The server answered without streaming: its silence says nothing, the request timeout holds. */
  disarm(): void;
}

export interface StallWatchOptions {
  endpoint: string;
  /** Silence that aborts the request; 0 = never. */
  stallMs: number;
  /** Says (text) or takes back (undefined) what the task waits for: its running note. */
  note?: ((text: string | undefined) => void) | undefined;
  /** Where the live cards read every watch's silence. */
  board?: StallBoard | undefined;
  now?: () => number;
}

/**
 * The silence of one streamed request: after a while it says "no tokens from X for N s", and at
 * `stallMs` it aborts its signal with STALLED. Every wait has a timer here, unref'd and cleared.
 */
export class StallWatch implements StreamWatch {
  private readonly controller = new AbortController();
  private readonly options: StallWatchOptions;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private last = 0;
  private noted = false;
  /** True once it aborted the request. */
  stalled = false;

  constructor(options: StallWatchOptions) {
    this.options = options;
    this.now = options.now ?? (() => performance.now());
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get endpoint(): string {
    return this.options.endpoint;
  }

  /** How long it has been silent (0 when not armed). */
  get silentMs(): number {
    return this.timer === undefined ? 0 : this.now() - this.last;
  }

  arm(): void {
    if (this.options.stallMs <= 0 || this.timer !== undefined || this.stalled) return;
    this.last = this.now();
    // Ten looks per limit, at most one a second: a 60 s limit is met within a second.
    const every = Math.min(1000, Math.max(25, this.options.stallMs / 10));
    this.timer = setInterval(() => this.look(), every);
    this.timer.unref();
    this.options.board?.add(this);
  }

  touch(): void {
    this.last = this.now();
    if (this.noted) this.unnote();
  }

  disarm(): void {
    this.clear();
  }

  /** Stops watching (in `finally`); safe to call more than once. */
  clear(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.options.board?.remove(this);
    if (this.noted) this.unnote();
  }

  private unnote(): void {
    this.noted = false;
    this.options.note?.(undefined);
  }

  private look(): void {
    const silent = this.now() - this.last;
    const seconds = this.options.stallMs / 1000;
    if (silent >= this.options.stallMs) {
      this.stalled = true;
      this.clear();
      this.controller.abort(stalledError(this.options.endpoint, seconds));
      return;
    }
    if (silent >= Math.min(STALL_NOTE_MS, this.options.stallMs / 2)) {
      this.noted = true;
      this.options.note?.(silenceText(this.options.endpoint, silent));
    }
  }
}

/** "no tokens from gpu1 for 12 s": what a task's view and the dashboard say while it waits. */
export function silenceText(endpoint: string, silentMs: number): string {
  return `no tokens from ${endpoint} for ${Math.floor(silentMs / 1000)} s`;
}

/** What a stall's STALLED tells the user to do. */
const STALL_HINT =
  "If the server is only slow (a long prompt on slow hardware: the wait for the first token counts), raise llm.stallSeconds; else check the server log for a hung slot, or lower the endpoint's concurrency. Run the failed prompts again with resume_job (include_failed: true).";

/**
 * STALLED for a request silent `seconds` on `endpoint`; `earlier` names where the first attempt
 * stalled when this was its retry.
 */
export function stalledError(endpoint: string, seconds: number, earlier?: string): LlmError {
  const retried =
    earlier === undefined
      ? ''
      : earlier === endpoint
        ? ' It was retried once there.'
        : ` It was retried once after ${earlier} stalled the same way.`;
  return new LlmError(
    'STALLED',
    `No token from endpoint ${endpoint} for ${seconds} s: the request was aborted.${retried}`,
    {
      hint: STALL_HINT,
    },
  );
}

/** The watches armed now, for the endpoint cards: the longest silence past the note's threshold. */
export class StallBoard {
  private readonly watches = new Set<StallWatch>();
  private readonly noteMs: number;

  constructor(stallMs: number) {
    this.noteMs = Math.min(STALL_NOTE_MS, stallMs / 2);
  }

  add(watch: StallWatch): void {
    this.watches.add(watch);
  }

  remove(watch: StallWatch): void {
    this.watches.delete(watch);
  }

  /** "no tokens from X for N s (2 requests)" for an endpoint with silent requests, else undefined. */
  noteFor(endpoint: string): string | undefined {
    let longest = 0;
    let count = 0;
    for (const watch of this.watches) {
      if (watch.endpoint !== endpoint) continue;
      const silent = watch.silentMs;
      if (silent < this.noteMs) continue;
      count++;
      longest = Math.max(longest, silent);
    }
    if (count === 0) return undefined;
    return `${silenceText(endpoint, longest)}${count > 1 ? ` (${count} requests)` : ''}`;
  }

  /** The endpoint cards with the silence of their requests after their detail line. */
  withNotes(cards: LiveCard[]): LiveCard[] {
    if (this.watches.size === 0) return cards;
    return cards.map((card) => {
      const note = this.noteFor(card.name);
      return note === undefined ? card : { ...card, detail: card.detail ? `${card.detail} · ${note}` : note };
    });
  }
}
