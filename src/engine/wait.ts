/** What waiting on jobs needs of the engine. */
export interface WaitSource {
  /** Brings in what other servers did to these jobs. */
  refresh(jobIds: readonly string[]): Promise<void>;
  /** No task queued or running, and every record on disk (true for a job not known). */
  isDone(jobId: string): boolean;
  /** Called on every task state change; returns how to stop listening. */
  onChange(listener: () => void): () => void;
  /** Follows the jobs among these that other servers run (they change only on disk); returns how to stop. */
  pollForeign(jobIds: readonly string[]): () => void;
}

/**
 * Waits until every listed job has no queued or running task, `timeoutMs` passes, or `signal`
 * aborts; then resolves (never rejects) with whether they are all done. `onUpdate` runs after
 * each change.
 */
export async function waitForJobs(
  source: WaitSource,
  jobIds: readonly string[],
  timeoutMs: number,
  signal?: AbortSignal,
  onUpdate?: () => void,
): Promise<boolean> {
  await source.refresh(jobIds);
  const done = (): boolean => jobIds.every((id) => source.isDone(id));
  if (done() || timeoutMs <= 0 || signal?.aborted) return done();
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      clearTimeout(timer);
      stopPolling();
      unsubscribe();
      signal?.removeEventListener('abort', finish);
      resolve();
    };
    const timer = setTimeout(finish, timeoutMs);
    const stopPolling = source.pollForeign(jobIds);
    const unsubscribe = source.onChange(() => {
      onUpdate?.();
      if (done()) finish();
    });
    signal?.addEventListener('abort', finish, { once: true });
  });
  return done();
}
