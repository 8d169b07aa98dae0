import { defineConfig } from 'vitest/config';
import { leftOut } from './test/platform-needs.js';

const skipped = leftOut(process.platform);
for (const [file, why] of skipped) process.stderr.write(`skipped on ${process.platform}: ${file} (needs ${why})\n`);

// Sized for a loaded 2-core machine (CI shares its cores): tests wait on events with their own
// deadlines, so these only catch a test that hangs. Speed goals live in `npm run bench`.
export default defineConfig({
  test: {
    dir: 'test',
    exclude: ['**/node_modules/**', ...skipped.map(([file]) => file)],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
