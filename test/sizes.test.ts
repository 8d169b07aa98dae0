import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/client.js';

/** Files and functions a person can hold (issue 19): counted on the formatted sources. */
const MAX_FILE_LINES = 400;
const MAX_FUNCTION_LINES = 80;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.(ts|mjs|js|py)$/.test(entry.name) ? [full] : [];
  });
}

const files = ['src', 'workers', 'python', 'web'].flatMap((dir) => sourceFiles(path.join(repoRoot, dir)));
const lineCount = (text: string): number => text.split('\n').length - (text.endsWith('\n') ? 1 : 0);

/** A function whose body is one data table (an object or array literal returned or given whole) is data, not logic. */
function isDataTable(body: ts.Node): boolean {
  const inner = ts.isBlock(body) && body.statements.length === 1 ? body.statements[0] : body;
  const expression = inner && ts.isReturnStatement(inner) ? inner.expression : inner;
  return (
    expression !== undefined && (ts.isObjectLiteralExpression(expression) || ts.isArrayLiteralExpression(expression))
  );
}

/** Every function-like node of a TypeScript file longer than the limit, as `file:line name (n lines)`. */
export function longFunctions(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const body = node.body as ts.Node;
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      if (lines > MAX_FUNCTION_LINES && !isDataTable(body)) {
        const name = node.name && ts.isIdentifier(node.name) ? node.name.text : '(anonymous)';
        found.push(`${path.relative(repoRoot, file)}:${start + 1} ${name} (${lines} lines)`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Python functions longer than the limit (a def runs until the next line indented at most as deep). */
function longPythonFunctions(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const found: string[] = [];
  lines.forEach((line, i) => {
    const def = /^(\s*)(?:async\s+)?def\s+(\w+)/.exec(line);
    if (!def) return;
    const indent = def[1]?.length ?? 0;
    let end = i + 1;
    while (end < lines.length) {
      const next = lines[end] ?? '';
      if (next.trim() !== '' && next.length - next.trimStart().length <= indent) break;
      end++;
    }
    while (end > i + 1 && (lines[end - 1] ?? '').trim() === '') end--;
    if (end - i > MAX_FUNCTION_LINES)
      found.push(`${path.relative(repoRoot, file)}:${i + 1} ${def[2]} (${end - i} lines)`);
  });
  return found;
}

describe('sizes', () => {
  it(`keeps every source file at ${MAX_FILE_LINES} lines or fewer`, () => {
    const long = files
      .map((file) => ({ file: path.relative(repoRoot, file), lines: lineCount(readFileSync(file, 'utf8')) }))
      .filter(({ lines }) => lines > MAX_FILE_LINES)
      .map(({ file, lines }) => `${file} (${lines} lines)`);
    expect(long).toEqual([]);
  });

  it(`keeps every function at ${MAX_FUNCTION_LINES} lines or fewer, data tables aside`, () => {
    const long = files.flatMap((file) => (file.endsWith('.py') ? longPythonFunctions(file) : longFunctions(file)));
    expect(long).toEqual([]);
  });
});
