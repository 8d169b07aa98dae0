import { createRequire } from 'node:module';
import path from 'node:path';

/** The page's files, served from the package (and uPlot from its own): nothing comes from the network. */
export function dashboardAssets(packageRoot: string): Record<string, string> {
  const require = createRequire(import.meta.url);
  const page = path.join(packageRoot, 'web');
  return {
    'index.html': path.join(page, 'index.html'),
    'app.js': path.join(page, 'app.js'),
    'format.js': path.join(page, 'format.js'),
    'dom.js': path.join(page, 'dom.js'),
    'app.css': path.join(page, 'app.css'),
    'uPlot.iife.min.js': require.resolve('uplot/dist/uPlot.iife.min.js'),
    'uPlot.min.css': require.resolve('uplot/dist/uPlot.min.css'),
  };
}
