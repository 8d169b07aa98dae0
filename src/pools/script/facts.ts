// What the kind's index.ts (loaded before the server answers initialize) and its pool (loaded
// after) both name: a leaf, so that index.ts loads none of the pool.

/** The job kind, as jobs record it. */
export const SCRIPT_KIND = 'script';
