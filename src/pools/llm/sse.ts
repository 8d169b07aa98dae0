import { Utf8Check } from './decoding.js';

/** One server-sent event: `event:` name (default "message") and its `data:` lines joined by "\n". */
export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Incremental SSE parser. TCP reads split lines anywhere (even inside a UTF-8 character), so bytes
 * are decoded in streaming mode and partial lines wait in a buffer for the rest.
 */
export class SseParser {
  private readonly decoder = new TextDecoder();
  /** Whether the bytes were valid UTF-8: invalid ones are decoded as U+FFFD, and the answer says so. */
  private readonly utf8 = new Utf8Check();
  private buffer = '';
  private eventName = '';
  private dataLines: string[] = [];

  /** Feeds raw bytes; returns the events completed by them. */
  push(chunk: Uint8Array | string): SseEvent[] {
    if (typeof chunk !== 'string') this.utf8.push(chunk);
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const events: SseEvent[] = [];
    let newline: number;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) !== -1) {
      // A lone "\r" at the very end may be the first half of "\r\n": wait for the next read.
      if (this.buffer[newline] === '\r' && newline === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith('\r\n', newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      this.line(line, events);
    }
    return events;
  }

  /** Flushes an event left open when the stream ends without a blank line. */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    this.utf8.end();
    const rest = this.buffer + this.decoder.decode();
    this.buffer = '';
    if (rest.length > 0) this.line(rest, events);
    this.line('', events);
    return events;
  }

  /** Some bytes so far were not valid UTF-8 (a character split across reads is not). */
  get lossy(): boolean {
    return this.utf8.lossy;
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === '') {
      if (this.dataLines.length > 0)
        events.push({ event: this.eventName || 'message', data: this.dataLines.join('\n') });
      this.eventName = '';
      this.dataLines = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.dataLines.push(value);
    else if (field === 'event') this.eventName = value;
  }
}
