import { describe, expect, it } from 'vitest';
import { printCodeStats, printDependencies } from '../src/demo-report.js';

function printed(print: (write: (text: string) => void) => void): string {
  let out = '';
  print((text) => {
    out += text;
  });
  return out;
}

describe("the demo's merged figures", () => {
  it('merges code_stats.py results by language, most code first, and names the largest files', () => {
    const values = [
      { files: [{ file: 'a.ts', language: 'typescript', lines: 10, code: 8, functions: 2, todos: ['x'] }] },
      { files: [{ file: 'b.py', language: 'python', lines: 30, code: 20, functions: 3 }, { file: 'c.txt' }] },
    ];
    const text = printed((write) => printCodeStats(values, write));
    expect(text).toContain('Code statistics, merged from 3 files:');
    const rows = text.split('\n').filter((line) => /^ {2}(python|typescript|other)\b/.test(line));
    expect(rows.map((row) => row.trim().split(/\s+/))).toEqual([
      ['python', '1', '30', '20', '3', '0'],
      ['typescript', '1', '10', '8', '2', '1'],
      ['other', '1', '0', '0', '0', '0'],
    ]);
    expect(text).toContain('largest: b.py (20), a.ts (8), c.txt (0)');
  });

  it('counts the files importing each package or module once per file', () => {
    const values = [
      {
        files: [
          {
            file: 'a.ts',
            external: [
              { package: 'zod', specifier: 'zod' },
              { package: 'zod', specifier: 'zod/v4' },
            ],
          },
          {
            file: 'b.ts',
            external: [{ specifier: 'undici' }],
            internal: [{ path: 'src/errors.ts', specifier: './e' }],
          },
        ],
      },
    ];
    const text = printed((write) => printDependencies(values, write));
    expect(text).toContain('Dependencies, merged from 2 files:');
    expect(text).toContain('external packages (files importing them): zod (1), undici (1)');
    expect(text).toContain('most imported modules of this repo: src/errors.ts (1)');
    expect(printed((write) => printDependencies([], write))).toContain(
      'external packages (files importing them): none',
    );
  });
});
