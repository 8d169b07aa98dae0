import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatAge, formatDuration } from '../../src/tools/format.js';
import { repoRoot } from '../helpers/client.js';

/** Values on both sides of every unit's edge, and rounding edges that once printed "60.0 s" or "1 min 60 s". */
const VALUES = [
  0, 0.4, 1, 12, 999, 999.4, 999.5, 1000, 1049, 1050, 17_240, 59_949, 59_950, 59_999, 60_000, 61_000, 89_400, 89_600,
  119_500, 599_000, 3_599_400, 3_599_600, 3_600_000, 3_629_999, 3_630_000, 7_199_000, 86_400_000, 172_799_000,
  172_800_000, 1_000_000_000,
];

describe('formatDuration: one way to say a duration, in the tools, the CLI and the dashboard', () => {
  it('says ms, s with a tenth, min and s, h and min, days', () => {
    expect(VALUES.map(formatDuration)).toEqual([
      '0 ms',
      '0 ms',
      '1 ms',
      '12 ms',
      '999 ms',
      '999 ms',
      '1.0 s',
      '1.0 s',
      '1.0 s',
      '1.1 s',
      '17.2 s',
      '59.9 s',
      '1 min 0 s',
      '1 min 0 s',
      '1 min 0 s',
      '1 min 1 s',
      '1 min 29 s',
      '1 min 30 s',
      '2 min 0 s',
      '9 min 59 s',
      '59 min 59 s',
      '1 h 0 min',
      '1 h 0 min',
      '1 h 0 min',
      '1 h 1 min',
      '2 h 0 min',
      '24 h 0 min',
      '2 days',
      '2 days',
      '11 days',
    ]);
    expect(formatAge(new Date(10_000).toISOString(), 27_240)).toBe('17.2 s ago');
  });

  it("the dashboard page's copy (web/format.js) says every value as the server does", async () => {
    const web = (await import(pathToFileURL(path.join(repoRoot, 'web', 'format.js')).href)) as {
      duration(ms: number | undefined): string;
    };
    expect(VALUES.map((ms) => web.duration(ms))).toEqual(VALUES.map(formatDuration));
    expect(web.duration(undefined)).toBe('');
  });
});
