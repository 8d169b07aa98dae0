import { describe, expect, it } from 'vitest';
import { Router } from '../../../src/pools/llm/router.js';

describe('Router', () => {
  it('sends each request to the least busy endpoint and never past a limit', async () => {
    const router = new Router([
      { name: 'a', limit: 2 },
      { name: 'b', limit: 1 },
    ]);
    const signal = new AbortController().signal;
    const first = await router.acquire(['a', 'b'], signal);
    const second = await router.acquire(['a', 'b'], signal);
    const third = await router.acquire(['a', 'b'], signal);
    // a idle and b idle: a (config order); then b (a is half busy); then a.
    expect([first.endpoint, second.endpoint, third.endpoint]).toEqual(['a', 'b', 'a']);
    let fourth: string | undefined;
    const waiting = router.acquire(['a', 'b'], signal).then((lease) => (fourth = lease.endpoint));
    await new Promise((r) => setTimeout(r, 10));
    expect(fourth).toBeUndefined();
    second.release();
    second.release(); // a second release is ignored
    await waiting;
    expect(fourth).toBe('b');
    expect(router.stats('b')).toMatchObject({ active: 1, limit: 1, peak: 1 });
    expect(router.stats('a')).toMatchObject({ active: 2, peak: 2 });
  });

  it('rejects a waiting request when its signal aborts, and serves the next waiter', async () => {
    const router = new Router([{ name: 'a', limit: 1 }]);
    const held = await router.acquire(['a'], new AbortController().signal);
    const controller = new AbortController();
    const abandoned = router.acquire(['a'], controller.signal);
    const next = router.acquire(['a'], new AbortController().signal);
    controller.abort(new Error('cancelled'));
    await expect(abandoned).rejects.toThrow('cancelled');
    held.release();
    expect((await next).endpoint).toBe('a');
  });

  it('avoids an endpoint marked down while another is healthy, and uses it when nothing else is left', async () => {
    const router = new Router([
      { name: 'a', limit: 4 },
      { name: 'b', limit: 4 },
    ]);
    const signal = new AbortController().signal;
    router.markDown('a', 60_000);
    expect((await router.acquire(['a', 'b'], signal)).endpoint).toBe('b');
    expect((await router.acquire(['a'], signal)).endpoint).toBe('a');
    router.markUp('a');
    expect((await router.acquire(['a', 'b'], signal)).endpoint).toBe('a');
  });
});
