import type { ChatMessage } from '../types.js';
import { elidedStub } from './format.js';

interface Entry {
  message: ChatMessage;
  /** A tool result's one-line stand-in, for when the context fills. */
  stub?: string;
  elided?: boolean;
}

/** Bytes of a message as a server counts them (content and the calls it carries). */
function bytesOf(message: ChatMessage): number {
  let bytes = Buffer.byteLength(message.content) + 16;
  for (const call of message.tool_calls ?? [])
    bytes += Buffer.byteLength(call.function.arguments) + call.function.name.length + 32;
  return bytes;
}

/**
 * An investigation's conversation. When it nears the model's context, the oldest tool results give
 * way to a one-line stub (`[read_file src/a.ts 1–80: 2.1 KB, elided]`) before the request is sent:
 * the agent can read them again, and the loop never fails on a context it could have made room in.
 */
export class Conversation {
  private readonly entries: Entry[] = [];

  add(message: ChatMessage, summary?: string): void {
    const entry: Entry = { message };
    if (summary !== undefined) entry.stub = elidedStub(summary, message.content);
    this.entries.push(entry);
  }

  /** The system prompt changed (the tools described in it, for a server that refuses `tools`). */
  replaceSystem(content: string): void {
    const first = this.entries[0];
    if (first?.message.role === 'system') first.message = { ...first.message, content };
  }

  get messages(): ChatMessage[] {
    return this.entries.map((entry) =>
      entry.elided && entry.stub !== undefined ? { ...entry.message, content: entry.stub } : entry.message,
    );
  }

  get bytes(): number {
    return this.messages.reduce((sum, message) => sum + bytesOf(message), 0);
  }

  /** Tool results still whole, oldest first (the newest is kept whole: the agent has not read it yet). */
  private elidable(): Entry[] {
    const results = this.entries.filter((entry) => entry.stub !== undefined && !entry.elided);
    return results.slice(0, -1);
  }

  /** Elides the oldest tool results until the conversation is at most `limit` bytes; how many it elided. */
  fitTo(limit: number): number {
    let elided = 0;
    for (const entry of this.elidable()) {
      if (this.bytes <= limit) break;
      entry.elided = true;
      elided++;
    }
    return elided;
  }

  /** After a context overflow the estimate was wrong: elide the older half of what is left (at least one). */
  elideHalf(): number {
    const left = this.elidable();
    const count = Math.max(1, Math.ceil(left.length / 2));
    for (const entry of left.slice(0, count)) entry.elided = true;
    return Math.min(count, left.length);
  }

  /** Whether the result of an earlier call is still whole in the conversation (index of its message). */
  isWhole(index: number): boolean {
    const entry = this.entries[index];
    return entry !== undefined && !entry.elided;
  }

  get length(): number {
    return this.entries.length;
  }
}
