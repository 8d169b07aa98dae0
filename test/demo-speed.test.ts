import { describe, expect, it } from 'vitest';
import { speedReport, spreadOf } from '../src/demo-speed.js';

describe("the demo's speed-up, with its spread and where it comes from", () => {
  it('takes the median and the extremes of a sample (the middle two averaged when even)', () => {
    expect(spreadOf([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 });
    expect(spreadOf([4, 1, 2, 3])).toEqual({ median: 2.5, min: 1, max: 4 });
  });

  it("prints each way's median time (min – max) and each step's gain as the median of the rounds' own ratios", () => {
    const rounds = [
      { cold: 2400, warm: 600, parallel: 400 },
      { cold: 2000, warm: 400, parallel: 250 },
      { cold: 2200, warm: 550, parallel: 275 },
    ];
    const lines = speedReport(rounds, 1, 2).split('\n');
    expect(lines[0]).toMatch(
      /^ {2}a new python3 process per task, one after another, no server\s+2\.2 s \(2\.0 s – 2\.4 s\)$/,
    );
    // cold / warm per round: 4, 5, 4 → median 4 (4–5).
    expect(lines[1]).toMatch(
      /^ {2}monitor-mcp, warm processes, one task at a time\s+550 ms \(400 ms – 600 ms\)\s+4\.0× \(4\.0×–5\.0×\) from warm processes$/,
    );
    // warm / parallel: 1.5, 1.6, 2 → median 1.6 (1.5–2.0).
    expect(lines[2]).toMatch(
      /^ {2}monitor-mcp, warm processes, both jobs at once, one task at a time each\s+275 ms \(250 ms – 400 ms\)\s+1\.6× \(1\.5×–2\.0×\) from running in parallel on 2 CPU\(s\)$/,
    );
    // cold / parallel: 6, 8, 8 → median 8 (6–8).
    expect(lines[3]).toBe(
      '  In all 8.0× (6.0×–8.0×) faster than a process per task one after another: medians of 3 rounds (min – max).',
    );
  });
});
