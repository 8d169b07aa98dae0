import { MonitorError } from '../../errors.js';

/**
 * The script pool's slots as the pool itself sees them: the runs the engine gives it (which never
 * wait: the engine keeps to the limit) and calls lent to other kinds (lend.ts), which the engine
 * does not see, so they wait here for a slot the engine's runs leave free.
 */
export class Slots {
  private used = 0;
  /** Lent calls waiting: each is woken when a slot frees, and looks again. */
  private readonly waiting = new Set<() => void>();

  constructor(readonly limit: number) {}

  /** Slots in use now. */
  get inUse(): number {
    return this.used;
  }

  /** Counts `work` in a slot while it lasts (an engine run: it has its slot already). */
  async hold<T>(work: () => Promise<T>): Promise<T> {
    this.used++;
    try {
      return await work();
    } finally {
      this.leave();
    }
  }

  /**
   * Waits for a free slot, then counts `work` in it. Rejects (CANCELLED, TIMEOUT) when `signal`
   * aborts or `deadline` (ms since the epoch) passes before a slot frees.
   */
  async borrow<T>(signal: AbortSignal, deadline: number, work: () => Promise<T>): Promise<T> {
    while (this.used >= this.limit) await this.nextFree(signal, deadline);
    return this.hold(work);
  }

  private leave(): void {
    this.used--;
    for (const wake of [...this.waiting]) wake();
  }

  private nextFree(signal: AbortSignal, deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (error?: MonitorError): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiting.delete(wake);
        if (error) reject(error);
        else resolve();
      };
      const wake = (): void => done();
      const onAbort = (): void => done(new MonitorError('CANCELLED', 'Cancelled while waiting for a script slot.'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.add(wake);
      timer = setTimeout(
        () =>
          done(
            new MonitorError('TIMEOUT', `Every one of the script pool's ${this.limit} slots stayed busy.`, {
              hint: 'Try again once the running script jobs are done.',
            }),
          ),
        Math.max(0, deadline - Date.now()),
      );
    });
  }
}
