// `npm run docs`: rewrites the README's configuration table from the settings' declarations
// (test/config/docs.test.ts fails while the README and the declarations disagree).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { configTable } = await import(path.join(root, 'dist', 'src', 'config.js'));
const readme = path.join(root, 'README.md');
const text = readFileSync(readme, 'utf8');
const begin = text.indexOf('<!-- settings:begin');
const end = text.indexOf('<!-- settings:end -->');
if (begin === -1 || end === -1)
  throw new Error('README.md has no <!-- settings:begin --> … <!-- settings:end --> markers');
const head = text.slice(0, text.indexOf('\n', begin) + 1);
writeFileSync(readme, `${head}${configTable()}\n${text.slice(end)}`);
process.stdout.write('README.md: configuration table updated\n');
