// Durations as every text of monitor-mcp says them ("850 ms", "17.2 s", "1 min 29 s", "3 h 5 min",
// "4 days"): a copy of formatDuration in src/tools/format.ts, since the page is plain JS;
// test/tools/format-duration.test.ts checks that the two agree.
export function duration(ms) {
  if (ms === undefined || ms === null) return '';
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  const minutes = Math.round(ms / 60_000);
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} days`;
}
