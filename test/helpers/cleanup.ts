import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach } from 'vitest';
import { MonitorError } from '../../src/errors.js';
import { makeTempDir } from './client.js';

/** A list whose functions run after each test of the file, last registered first. */
export function cleanupsAfterEach(): Array<() => Promise<void>> {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return cleanups;
}

/** The MonitorError a promise rejects with; fails the test when it resolves or throws anything else. */
export async function failure(promise: Promise<unknown>): Promise<MonitorError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MonitorError) return error;
    throw error;
  }
  throw new Error('expected a failure');
}

/** A fresh folder holding `files` (relative path → content), removed by `cleanups` after the test. */
export async function fileTree(
  files: Record<string, string>,
  cleanups: Array<() => Promise<void>>,
  prefix = 'files-',
): Promise<string> {
  const root = await makeTempDir(prefix);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), content);
  }
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  return root;
}
