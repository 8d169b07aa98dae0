interface Waiter {
  limit: number;
  resolve(release: () => void): void;
}

interface Slot {
  active: number;
  waiters: Waiter[];
}

/**
 * One counter per key (a host:port), shared by every job. Each acquire brings its own limit, so a
 * job that asks for fewer requests per host gets them while others may use the configured maximum.
 * Waiting ends with the signal's reason when it aborts, so a cancelled task never holds a place.
 */
export class KeyedSemaphore {
  private readonly slots = new Map<string, Slot>();

  async acquire(key: string, limit: number, signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { active: 0, waiters: [] };
      this.slots.set(key, slot);
    }
    if (slot.active < limit && slot.waiters.length === 0) {
      slot.active++;
      return this.releaser(key, slot);
    }
    const current = slot;
    return new Promise<() => void>((resolve, reject) => {
      const waiter: Waiter = {
        limit,
        resolve: (release) => {
          signal.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      const onAbort = (): void => {
        const at = current.waiters.indexOf(waiter);
        if (at !== -1) current.waiters.splice(at, 1);
        this.wake(key, current);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      current.waiters.push(waiter);
    });
  }

  /** Requests running now for `key` (for tests and diagnostics). */
  active(key: string): number {
    return this.slots.get(key)?.active ?? 0;
  }

  private releaser(key: string, slot: Slot): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      slot.active--;
      this.wake(key, slot);
    };
  }

  /** First come, first served: the head waiter goes when its own limit allows. */
  private wake(key: string, slot: Slot): void {
    for (;;) {
      const head = slot.waiters[0];
      if (!head || slot.active >= head.limit) break;
      slot.waiters.shift();
      slot.active++;
      head.resolve(this.releaser(key, slot));
    }
    if (slot.active === 0 && slot.waiters.length === 0) this.slots.delete(key);
  }
}
