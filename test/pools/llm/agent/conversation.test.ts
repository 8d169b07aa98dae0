import { describe, expect, it } from 'vitest';
import { Conversation } from '../../../../src/pools/llm/agent/conversation.js';

function filled(): Conversation {
  const conversation = new Conversation();
  conversation.add({ role: 'system', content: 'You investigate.' });
  conversation.add({ role: 'user', content: 'Task: find x' });
  for (const n of [1, 2, 3]) {
    conversation.add({ role: 'assistant', content: `call ${n}` });
    conversation.add({ role: 'tool', tool_call_id: `c${n}`, content: 'x'.repeat(3000) }, `read_file src/f${n}.ts 1–80`);
  }
  return conversation;
}

describe('Conversation', () => {
  it('elides the oldest tool results to a one-line stub until it fits, keeping the newest whole', () => {
    const conversation = filled();
    expect(conversation.bytes).toBeGreaterThan(9000);
    expect(conversation.fitTo(5000)).toBe(2);
    const contents = conversation.messages.map((m) => m.content);
    expect(contents[3]).toBe('[read_file src/f1.ts 1–80: 3.0 KB, elided]');
    expect(contents[5]).toBe('[read_file src/f2.ts 1–80: 3.0 KB, elided]');
    expect(contents[7]).toHaveLength(3000);
    // The call it answers is kept: the stub still answers its tool_call_id.
    expect(conversation.messages[3]?.tool_call_id).toBe('c1');
    expect(conversation.isWhole(3)).toBe(false);
    expect(conversation.isWhole(7)).toBe(true);
  });

  it('elides nothing when it fits, and the older half after an overflow the estimate missed', () => {
    const conversation = filled();
    expect(conversation.fitTo(1_000_000)).toBe(0);
    expect(conversation.elideHalf()).toBe(1);
    expect(conversation.elideHalf()).toBe(1);
    // The newest result is never elided: nothing is left to make room with.
    expect(conversation.elideHalf()).toBe(0);
  });

  it('replaces the system prompt (tools described in it for a server that refuses `tools`)', () => {
    const conversation = filled();
    conversation.replaceSystem('You investigate. Tools: …');
    expect(conversation.messages[0]).toEqual({ role: 'system', content: 'You investigate. Tools: …' });
  });
});
