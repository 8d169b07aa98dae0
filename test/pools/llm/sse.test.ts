import { describe, expect, it } from 'vitest';
import { SseParser } from '../../../src/pools/llm/sse.js';

describe('SseParser', () => {
  it('joins lines split across reads, even inside a UTF-8 character', () => {
    const parser = new SseParser();
    const bytes = Buffer.from('data: {"a":"é"}\n\ndata: [DONE]\n\n');
    const events = [];
    // One byte per read: the worst case TCP can hand us.
    for (const byte of bytes) events.push(...parser.push(Uint8Array.of(byte)));
    expect(events).toEqual([
      { event: 'message', data: '{"a":"é"}' },
      { event: 'message', data: '[DONE]' },
    ]);
  });

  it('handles CRLF, a CR split from its LF, comments, event names and multi-line data', () => {
    const parser = new SseParser();
    const events = [
      ...parser.push(': keep-alive\r'),
      ...parser.push('\nevent: error\r\ndata: line1\r\n'),
      ...parser.push('data: line2\r\n\r\n'),
    ];
    expect(events).toEqual([{ event: 'error', data: 'line1\nline2' }]);
  });

  it('flushes a last event that lacks its blank line', () => {
    const parser = new SseParser();
    expect(parser.push('data: tail')).toEqual([]);
    expect(parser.end()).toEqual([{ event: 'message', data: 'tail' }]);
  });
});
