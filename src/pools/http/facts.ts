// What the kind's index.ts (loaded before the server answers initialize) and its pool (loaded
// after) both name: a leaf, so that index.ts loads none of the pool.

/** The job kind, as jobs record it. */
export const HTTP_KIND = 'http';

/** Requests of one job in flight at once when the call names no concurrency. */
export const DEFAULT_HTTP_CONCURRENCY = 16;
