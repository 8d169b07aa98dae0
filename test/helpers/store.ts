import { rm } from 'node:fs/promises';
import { afterEach } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { makeTempDir } from './client.js';

/** Registers the file's afterEach; returns a maker of fresh stores, each on its own state directory removed after the test. */
export function useTempStores(): () => Promise<JobStore> {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  return async () => {
    const dir = await makeTempDir();
    dirs.push(dir);
    const store = new JobStore(dir, silentLogger);
    await store.init();
    return store;
  };
}
