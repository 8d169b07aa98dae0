import { describe, expect, it } from 'vitest';
import type { ServerFlavor, SlotFacts } from '../../../src/pools/llm/server-facts.js';
import {
  conversationKey,
  hashKey,
  MIN_SHARED_CHARS,
  PrefixSlots,
  type SlotSource,
  slotsPerPrefix,
  type Turn,
} from '../../../src/pools/llm/slots.js';

/** Endpoints as the probe left them: a flavour and slots per name, changeable mid-test. */
function source(servers: Record<string, { flavor: ServerFlavor; slots?: number }>): SlotSource {
  return {
    serverFlavor: (name) => servers[name]?.flavor,
    slotsOf: (name): SlotFacts | undefined => {
      const total = servers[name]?.slots;
      return total === undefined ? undefined : { total };
    },
  };
}

const never = new AbortController().signal;

/** Resolves true once `promise` settles, false while it is still pending after the microtasks ran. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise<void>((resolve) => setImmediate(resolve));
  return done;
}

describe('slotsPerPrefix', () => {
  it('gives a prefix a third of the slots, at least one', () => {
    expect([1, 2, 3, 4, 6, 8, 12].map(slotsPerPrefix)).toEqual([1, 1, 1, 2, 2, 3, 4]);
  });
});

describe('conversationKey', () => {
  const long = 'x'.repeat(MIN_SHARED_CHARS);
  it('keys conversations that share everything but a long-enough last message', () => {
    const a = conversationKey('m', [
      { role: 'system', content: long },
      { role: 'user', content: 'question 1' },
    ]);
    const b = conversationKey('m', [
      { role: 'system', content: long },
      { role: 'user', content: 'question 2' },
    ]);
    expect(a).toBeDefined();
    expect(a).toBe(b);
    expect(
      conversationKey('other', [
        { role: 'system', content: long },
        { role: 'user', content: 'q' },
      ]),
    ).not.toBe(a);
  });

  it('leaves short shared parts and single messages unkeyed', () => {
    expect(conversationKey('m', [{ role: 'user', content: long }])).toBeUndefined();
    expect(
      conversationKey('m', [
        { role: 'system', content: 'short' },
        { role: 'user', content: long },
      ]),
    ).toBeUndefined();
  });

  it('hashes parts with their lengths, so moving a boundary changes the key', () => {
    expect(hashKey('ab', 'c')).not.toBe(hashKey('a', 'bc'));
    expect(hashKey('ab', 'c')).toBe(hashKey('ab', 'c'));
  });
});

describe('PrefixSlots', () => {
  it('sends one prefix to at most its share of slots, and the rest of its requests wait for them', async () => {
    const slots = new PrefixSlots(source({ llama: { flavor: 'llama-server', slots: 6 } }), true);
    const first = await slots.enter('file', ['llama'], never);
    const second = await slots.enter('file', ['llama'], never);
    expect(first.on('llama')).toEqual({ slot: 0 });
    expect(second.on('llama')).toEqual({ slot: 1 });
    const third = slots.enter('file', ['llama'], never);
    expect(await settled(third)).toBe(false);
    expect(slots.inFlight('file')).toBe(2);

    // Another prefix is not held up by the first: it gets slots of its own at once.
    const other = await slots.enter('module', ['llama'], never);
    expect(other.on('llama')).toEqual({ slot: 2 });

    second.release();
    const admitted = await third;
    // Back on the slot that holds the prefix, not a fresh one.
    expect(admitted.on('llama')).toEqual({ slot: 1 });
    expect(slots.owners('llama').slice(0, 3)).toEqual(['file', 'file', 'module']);
    for (const turn of [first, admitted, other]) turn.release();
    expect(slots.inFlight('file')).toBe(0);
  });

  it('returns a prefix to its own slot later, and gives away the least recently used idle slot of a prefix that is done', async () => {
    const slots = new PrefixSlots(source({ llama: { flavor: 'llama-server', slots: 3 } }), true);
    const use = async (key: string | undefined): Promise<number | undefined> => {
      const turn = await slots.enter(key, ['llama'], never);
      const slot = turn.on('llama')?.slot;
      turn.release();
      return slot;
    };
    expect(await use('a')).toBe(0);
    expect(await use('b')).toBe(1);
    expect(await use('c')).toBe(2);
    expect(await use('b')).toBe(1);
    // All slots hold a prefix with nothing in flight: the least recently used one (a's) goes.
    expect(await use('d')).toBe(0);
    expect(slots.owners('llama')).toEqual(['d', 'b', 'c']);
    // An unkeyed prompt overwrites a slot's cache too: the slot is nobody's afterwards.
    expect(await use(undefined)).toBe(2);
    expect(slots.owners('llama')).toEqual(['d', 'b', undefined]);
    expect(await use('e')).toBe(2);
  });

  it('gives away a free slot first, then one whose prefix has nothing in flight, never one whose prefix is coming back', async () => {
    const slots = new PrefixSlots(source({ llama: { flavor: 'llama-server', slots: 3 } }), true);
    const a = await slots.enter('a', ['llama'], never);
    expect(a.on('llama')).toEqual({ slot: 0 });
    a.release();
    const b = await slots.enter('b', ['llama'], never);
    expect(b.on('llama')).toEqual({ slot: 1 });
    b.release();
    // b's next request is admitted (it waits for the router's lease): its slot stays b's.
    const bAgain = await slots.enter('b', ['llama'], never);
    const c = await slots.enter('c', ['llama'], never);
    expect(c.on('llama')).toEqual({ slot: 2 });
    const d = await slots.enter('d', ['llama'], never);
    expect(d.on('llama')).toEqual({ slot: 0 });
    expect(bAgain.on('llama')).toEqual({ slot: 1 });
    for (const turn of [bAgain, c, d]) turn.release();
  });

  it('does nothing where the server is not a llama-server, its slots are unknown, or reuse is off', async () => {
    const servers = {
      lms: { flavor: 'lmstudio' as const, slots: 4 },
      llama: { flavor: 'llama-server' as const },
    };
    const slots = new PrefixSlots(source(servers), true);
    const turns: Turn[] = [];
    for (let i = 0; i < 5; i++) turns.push(await slots.enter('k', ['lms'], never));
    expect(turns[0]?.on('lms')).toBeUndefined();
    // llama-server without slot figures: cache_prompt only, and no waiting.
    for (let i = 0; i < 5; i++) turns.push(await slots.enter('k', ['llama'], never));
    expect(turns.at(-1)?.on('llama')).toEqual({});
    for (const turn of turns) turn.release();

    const off = new PrefixSlots(source({ llama: { flavor: 'llama-server', slots: 6 } }), false);
    const offTurns: Turn[] = [];
    for (let i = 0; i < 5; i++) offTurns.push(await off.enter('k', ['llama'], never));
    expect(offTurns[4]?.on('llama')).toBeUndefined();
    for (const turn of offTurns) turn.release();
  });

  it('counts every llama-server endpoint among the candidates, and does not hold a prefix that may go elsewhere', async () => {
    const slots = new PrefixSlots(
      source({
        a: { flavor: 'llama-server', slots: 3 },
        b: { flavor: 'llama-server', slots: 3 },
        c: { flavor: 'openai' },
      }),
      true,
    );
    const two = [await slots.enter('k', ['a', 'b'], never), await slots.enter('k', ['a', 'b'], never)];
    expect(await settled(slots.enter('k', ['a', 'b'], never))).toBe(false);
    // An OpenAI-compatible server among the candidates takes it: no limit here.
    const third = await slots.enter('k', ['a', 'c'], never);
    expect(third.on('c')).toBeUndefined();
    third.release();
    for (const turn of two) turn.release();
  });

  it('stops waiting when the signal aborts, and releases once however often it is called', async () => {
    const slots = new PrefixSlots(source({ llama: { flavor: 'llama-server', slots: 1 } }), true);
    const held = await slots.enter('k', ['llama'], never);
    const controller = new AbortController();
    const waiting = slots.enter('k', ['llama'], controller.signal);
    controller.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    await expect(slots.enter('k', ['llama'], controller.signal)).rejects.toThrow('cancelled');
    held.release();
    held.release();
    expect(slots.inFlight('k')).toBe(0);
    const next = await slots.enter('k', ['llama'], never);
    expect(next.on('llama')).toEqual({ slot: 0 });
    next.release();
  });

  it('starts a fresh table when the server comes back with other slots', async () => {
    const servers: Record<string, { flavor: ServerFlavor; slots?: number }> = {
      llama: { flavor: 'llama-server', slots: 2 },
    };
    const slots = new PrefixSlots(source(servers), true);
    const turn = await slots.enter('k', ['llama'], never);
    expect(turn.on('llama')).toEqual({ slot: 0 });
    turn.release();
    servers.llama = { flavor: 'llama-server', slots: 4 };
    expect(slots.owners('llama')).toEqual(['k', undefined]);
    const again = await slots.enter('j', ['llama'], never);
    expect(again.on('llama')).toEqual({ slot: 0 });
    expect(slots.owners('llama')).toEqual(['j', undefined, undefined, undefined]);
    again.release();
  });
});
