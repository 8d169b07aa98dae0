import { defineConfig } from 'vitest/config';

// Sized for a loaded 2-core machine (CI shares its cores): tests wait on events with their own
// deadlines, so these only catch a test that hangs. Speed goals live in `npm run bench`.
export default defineConfig({
  test: {
    dir: 'test',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
