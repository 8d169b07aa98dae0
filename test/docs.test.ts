import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { docsFacts, GENERATED_PAGES, renderDocs } from '../.ci/docs.mjs';
import { configTable, parseConfig } from '../src/registry.js';
import { processControl } from '../src/processes.js';
import { createServer } from '../src/server.js';
import { repoRoot } from './helpers/client.js';

const read = (file: string): string => readFileSync(path.join(repoRoot, file), 'utf8');
const docPages = readdirSync(path.join(repoRoot, 'docs'))
  .filter((name) => name.endsWith('.md'))
  .map((name) => `docs/${name}`);

/** The anchors GitHub gives a page's headings (lower case, punctuation dropped, spaces as hyphens, repeats numbered). */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const found = new Set<string>();
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '');
  for (const [, heading] of prose.matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = (heading ?? '')
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M}\p{Pc} -]/gu, '')
      .replaceAll(' ', '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    found.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return found;
}

describe('docs/ made from the code', () => {
  it('every generated part of docs/ is current (run `npm run docs` after changing a tool or a setting)', async () => {
    const facts = await docsFacts({ createServer, parseConfig, configTable, processControl }, repoRoot);
    const pages = Object.fromEntries(GENERATED_PAGES.map((page) => [page, read(page)]));
    const fresh = renderDocs(pages, facts);
    for (const page of GENERATED_PAGES)
      expect(pages[page], `${page} is stale: run \`npm run docs\` and commit it`).toBe(fresh[page]);
  });
});

describe('the README is a landing page', () => {
  const readme = read('README.md');

  it('at most 25,000 bytes, with the set-up commands and a link to every page of docs/', () => {
    expect(Buffer.byteLength(readme)).toBeLessThanOrEqual(25_000);
    expect(readme).toContain('npm ci && npm run demo');
    expect(readme).toMatch(/^npm test +#/m);
    for (const page of docPages) expect(readme, page).toContain(`](${page}`);
  });

  it('says how to add a kind, in numbered steps', () => {
    const section = /^## Adding a kind\n([\s\S]*?)(?=^## |$(?![\s\S]))/m.exec(readme)?.[1] ?? '';
    const steps = section.match(/^\d+\. /gm) ?? [];
    expect(steps.length).toBeGreaterThanOrEqual(5);
    expect(steps.length).toBeLessThanOrEqual(8);
  });

  it('every relative link of the README and docs/ names a file that exists, and a heading there', () => {
    const broken: string[] = [];
    for (const page of ['README.md', ...docPages]) {
      const text = read(page).replace(/^```[\s\S]*?^```/gm, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (target === undefined || /^[a-z]+:/.test(target)) continue;
        const [file = '', anchor] = target.split('#');
        const linked = file === '' ? page : path.posix.join(path.posix.dirname(page), file);
        if (!existsSync(path.join(repoRoot, linked))) broken.push(`${page}: ${target} (no file ${linked})`);
        else if (anchor !== undefined && linked.endsWith('.md') && !anchors(read(linked)).has(anchor))
          broken.push(`${page}: ${target} (no heading #${anchor} in ${linked})`);
      }
    }
    expect(broken).toEqual([]);
  });
});
