import { describe, expect, it } from 'vitest';
import { KeyedSemaphore } from '../../../src/pools/http/semaphore.js';

describe('KeyedSemaphore', () => {
  it('limits each key separately and hands places over in order', async () => {
    const s = new KeyedSemaphore();
    const signal = new AbortController().signal;
    const a1 = await s.acquire('a', 2, signal);
    const a2 = await s.acquire('a', 2, signal);
    const b1 = await s.acquire('b', 2, signal);
    expect(s.active('a')).toBe(2);
    expect(s.active('b')).toBe(1);
    const order: string[] = [];
    const a3 = s.acquire('a', 2, signal).then((release) => {
      order.push('a3');
      return release;
    });
    const a4 = s.acquire('a', 2, signal).then((release) => {
      order.push('a4');
      return release;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual([]);
    a1();
    a1(); // releasing twice frees one place only
    (await a3)();
    a2();
    (await a4)();
    expect(order).toEqual(['a3', 'a4']);
    b1();
    expect(s.active('a')).toBe(0);
    expect(s.active('b')).toBe(0);
  });

  it('a waiter whose signal aborts leaves the queue without taking a place', async () => {
    const s = new KeyedSemaphore();
    const held = await s.acquire('h', 1, new AbortController().signal);
    const controller = new AbortController();
    const waiting = s.acquire('h', 1, controller.signal);
    controller.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    held();
    expect(s.active('h')).toBe(0);
    const next = await s.acquire('h', 1, new AbortController().signal);
    expect(s.active('h')).toBe(1);
    next();
  });

  it('a lower limit waits while a higher one may go', async () => {
    const s = new KeyedSemaphore();
    const signal = new AbortController().signal;
    const first = await s.acquire('k', 4, signal);
    let strictGot = false;
    const strict = s.acquire('k', 1, signal).then((release) => {
      strictGot = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(strictGot).toBe(false);
    first();
    (await strict)();
    expect(strictGot).toBe(true);
  });
});
