/** Waits for `promise`, but stops waiting (rejecting with the reason) when `signal` aborts. */
export function raceSignal<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** True as soon as one of the promises is; false once all are false; rejects when one rejects first. */
export function firstTrue(promises: ReadonlyArray<Promise<boolean>>): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    let pending = promises.length;
    if (pending === 0) resolve(false);
    for (const promise of promises) {
      promise.then((value) => {
        if (value) resolve(true);
        else if (--pending === 0) resolve(false);
      }, reject);
    }
  });
}
