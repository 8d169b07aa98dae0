/**
 * A signal that aborts after `ms`, or as soon as any parent signal aborts. clear() stops the timer
 * and drops the parent listeners: AbortSignal.timeout + AbortSignal.any would keep the timer and
 * the signals alive for the whole timeout (600 s by default) after the request has ended.
 */
export class Deadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly parents: AbortSignal[];
  private readonly onParentAbort: (event: Event) => void;
  /** True once the time ran out (not when a parent aborted). */
  expired = false;

  constructor(ms: number, parents: ReadonlyArray<AbortSignal | undefined>, reason: () => unknown) {
    this.parents = parents.filter((p): p is AbortSignal => p !== undefined);
    this.onParentAbort = (event) => {
      const target = event.target;
      this.abort(target instanceof AbortSignal ? target.reason : undefined);
    };
    const already = this.parents.find((p) => p.aborted);
    if (already) this.controller.abort(already.reason);
    else for (const parent of this.parents) parent.addEventListener('abort', this.onParentAbort, { once: true });
    this.timer = setTimeout(
      () => {
        this.expired = true;
        this.abort(reason());
      },
      Math.max(0, ms),
    );
    // A request in flight keeps the process alive by itself; the timer must not outlive it.
    this.timer.unref();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private abort(reason: unknown): void {
    this.clear();
    this.controller.abort(reason);
  }

  /** Call when the work is done (in `finally`). Safe to call more than once. */
  clear(): void {
    clearTimeout(this.timer);
    for (const parent of this.parents) parent.removeEventListener('abort', this.onParentAbort);
  }
}
