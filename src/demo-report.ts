/** What the demo prints from the script workers' results: their per-file figures, merged. */

export const pad = (text: string | number, width: number): string => String(text).padEnd(width);
export const padLeft = (text: string | number, width: number): string => String(text).padStart(width);

interface FileStats {
  file: string;
  language?: string;
  lines?: number;
  code?: number;
  functions?: number;
  classes?: number;
  todos?: unknown[];
  error?: string;
}
interface FileDeps {
  file: string;
  internal?: Array<{ path?: string; specifier: string }>;
  external?: Array<{ package?: string; specifier: string }>;
}

/** code_stats.py's per-file figures merged by language. */
export function printCodeStats(values: readonly unknown[], write: (text: string) => void): void {
  const perFile: FileStats[] = values.flatMap((v) => (v as { files?: FileStats[] }).files ?? []);
  const byLanguage = new Map<
    string,
    { files: number; lines: number; code: number; functions: number; todos: number }
  >();
  for (const f of perFile) {
    const key = f.language ?? 'other';
    const row = byLanguage.get(key) ?? { files: 0, lines: 0, code: 0, functions: 0, todos: 0 };
    row.files++;
    row.lines += f.lines ?? 0;
    row.code += f.code ?? 0;
    row.functions += f.functions ?? 0;
    row.todos += f.todos?.length ?? 0;
    byLanguage.set(key, row);
  }
  write(
    `\nCode statistics, merged from ${perFile.length} files:\n  ${pad('language', 12)}${padLeft('files', 7)}${padLeft('lines', 9)}${padLeft('code', 9)}${padLeft('functions', 11)}${padLeft('TODOs', 7)}\n`,
  );
  for (const [language, row] of [...byLanguage].sort((a, b) => b[1].code - a[1].code)) {
    write(
      `  ${pad(language, 12)}${padLeft(row.files, 7)}${padLeft(row.lines, 9)}${padLeft(row.code, 9)}${padLeft(row.functions, 11)}${padLeft(row.todos, 7)}\n`,
    );
  }
  const largest = [...perFile].sort((a, b) => (b.code ?? 0) - (a.code ?? 0)).slice(0, 5);
  write(`  largest: ${largest.map((f) => `${f.file} (${f.code ?? 0})`).join(', ')}\n`);
}

/** analyze_dependencies.py's per-file imports merged: the packages and modules most imported. */
export function printDependencies(values: readonly unknown[], write: (text: string) => void): void {
  const perDeps: FileDeps[] = values.flatMap((v) => (v as { files?: FileDeps[] }).files ?? []);
  const external = new Map<string, number>();
  const internal = new Map<string, number>();
  for (const f of perDeps) {
    for (const pkg of new Set((f.external ?? []).map((e) => e.package ?? e.specifier)))
      external.set(pkg, (external.get(pkg) ?? 0) + 1);
    for (const target of new Set((f.internal ?? []).map((e) => e.path ?? e.specifier)))
      internal.set(target, (internal.get(target) ?? 0) + 1);
  }
  const top = (m: Map<string, number>, n: number): string =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `${k} (${v})`)
      .join(', ');
  write(
    `\nDependencies, merged from ${perDeps.length} files:\n  external packages (files importing them): ${top(external, 8) || 'none'}\n  most imported modules of this repo: ${top(internal, 6) || 'none'}\n`,
  );
}
