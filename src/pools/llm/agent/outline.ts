/**
 * The outline worker's JSON (`# monitor: output:` in workers/outline.py: `{"files": [{"file",
 * "language", "lines", "symbols": [{"kind", "name", "line", "signature"?, "doc"?, "exported"?,
 * "members"?}], "error"?}]}`) as compact lines for the model: `L12 class Foo`, `L30   method bar(x)`.
 * Anything else in the JSON is ignored; a shape it does not expect gives an error line, not a throw.
 */
export function formatOutline(value: unknown, shownOf: (file: string) => string): string[] {
  const document = typeof value === 'string' ? parse(value) : value;
  const files = isRecord(document) && Array.isArray(document.files) ? document.files : undefined;
  if (files === undefined) return ['The outline worker answered in a form not understood.'];
  const out: string[] = [];
  for (const file of files.slice(0, 50)) {
    if (!isRecord(file)) continue;
    const shown = shownOf(typeof file.file === 'string' ? file.file : '?');
    if (typeof file.error === 'string') {
      out.push(`${shown}: no outline (${file.error.slice(0, 200)})`);
      continue;
    }
    const facts = [typeof file.language === 'string' ? file.language : undefined];
    if (typeof file.lines === 'number') facts.push(`${file.lines} lines`);
    const symbols = Array.isArray(file.symbols) ? file.symbols : [];
    out.push(`${shown} (${facts.filter(Boolean).join(', ')}${symbols.length === 0 ? ', no declarations' : ''}):`);
    symbolLines(symbols, 0, out);
    if (file.symbols_truncated === true) out.push('(more declarations not listed: read_file the rest)');
  }
  return out;
}

function symbolLines(symbols: readonly unknown[], depth: number, out: string[]): void {
  if (depth > 4) return;
  for (const symbol of symbols) {
    if (!isRecord(symbol) || typeof symbol.name !== 'string') continue;
    const line = typeof symbol.line === 'number' ? symbol.line : 0;
    const kind = typeof symbol.kind === 'string' ? symbol.kind : 'symbol';
    let text = `L${line} ${'  '.repeat(depth)}${symbol.exported === true ? 'export ' : ''}${kind} ${symbol.name}`;
    if (typeof symbol.signature === 'string')
      text += symbol.signature.startsWith('(') ? symbol.signature : ` ${symbol.signature}`;
    if (typeof symbol.heritage === 'string') text += ` ${symbol.heritage}`;
    if (Array.isArray(symbol.bases) && symbol.bases.length > 0) text += `(${symbol.bases.map(String).join(', ')})`;
    if (typeof symbol.doc === 'string') text += ` — ${symbol.doc.slice(0, 100)}`;
    out.push(text.length > 300 ? `${text.slice(0, 300)}…` : text);
    if (Array.isArray(symbol.members)) symbolLines(symbol.members, depth + 1, out);
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
