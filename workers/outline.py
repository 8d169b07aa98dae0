#!/usr/bin/env python3
# monitor: description: A map of each source file without its bodies: classes, functions and methods with line numbers and signatures (Python via ast, with docstring first lines; JS/TS top-level declarations, exports, interfaces and types by pattern).
# monitor: args: FILE... source files, relative to the task's cwd
# monitor: json: {"files": ["src/a.ts", ...]}
# monitor: output: json {"files": [{"file", "language", "lines", "symbols": [{"kind", "name", "line", "signature"?, "doc"?, "exported"?, "members"?}], "error"?}]}
# monitor: isolated: yes
# monitor: warm: yes
# monitor: pack: files
"""Standard library only, so it starts fast; reads each file once. Warm-capable: nothing a task reads or
changes outlives it (module state is constants and compiled patterns)."""
import os
import re
import sys

import _common

MAX_BYTES = 5 * 1024 * 1024
MAX_SYMBOLS = 500

JS_DECLARATION = re.compile(
    r"^(?P<indent>[ \t]*)(?P<export>export\s+(?:default\s+)?)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"
    r"(?:(?P<kind>function\*?|class|interface|type|enum|const|let|var)\s+(?P<name>[\w$]+))"
    r"(?P<rest>[^\n]*)",
    re.M,
)
JS_METHOD = re.compile(
    r"^[ \t]+(?:(?:public|private|protected|static|async|override|readonly|abstract|get|set)\s+)*"
    r"(?!(?:if|for|while|switch|catch|with|return|function|new|else|do|typeof|await|constructor)\b)"
    r"(?P<name>#?[\w$]+)\s*(?:<[^>\n]*>)?\((?P<params>[^)\n]*)\)\s*(?::\s*(?P<ret>[^{;\n]+))?\{",
    re.M,
)


fail = _common.failer("outline")


def python_symbols(text, path):
    import ast

    def signature(node):
        try:
            return f"({ast.unparse(node.args)})" + (f" -> {ast.unparse(node.returns)}" if node.returns else "")
        except Exception:  # ast.unparse of exotic nodes: the name alone is still useful
            return None

    def doc(node):
        text = ast.get_docstring(node, clean=True)
        return text.strip().splitlines()[0][:160] if text else None

    def describe(node, depth):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            entry = {"kind": "method" if depth else "function", "name": node.name, "line": node.lineno}
            sig = signature(node)
            if sig:
                entry["signature"] = ("async " if isinstance(node, ast.AsyncFunctionDef) else "") + sig
        elif isinstance(node, ast.ClassDef):
            entry = {"kind": "class", "name": node.name, "line": node.lineno}
            bases = [ast.unparse(b) for b in node.bases]
            if bases:
                entry["bases"] = bases
            members = [describe(child, depth + 1) for child in node.body]
            members = [m for m in members if m]
            if members:
                entry["members"] = members
        else:
            return None
        d = doc(node)
        if d:
            entry["doc"] = d
        return entry

    tree = ast.parse(text, filename=path)
    symbols = [s for s in (describe(node, 0) for node in tree.body) if s]
    module_doc = ast.get_docstring(tree)
    return symbols, (module_doc.strip().splitlines()[0][:160] if module_doc else None)


def js_symbols(text):
    symbols = []
    starts = _common.line_starts(text)

    def line_of(offset):
        return _common.line_of(starts, offset)

    for match in JS_DECLARATION.finditer(text):
        if match.group("indent"):
            continue
        kind = match.group("kind").rstrip("*")
        rest = match.group("rest").strip()
        if kind in ("const", "let", "var"):
            # Only functions and classes held in variables make the outline; plain values do not.
            if not re.search(r"=\s*(?:async\s+)?(?:function\b|\([^)]*\)\s*(?::[^=]+)?=>|[\w$]+\s*=>|class\b)", rest):
                if not match.group("export"):
                    continue
            kind = "const"
        entry = {"kind": kind, "name": match.group("name"), "line": line_of(match.start())}
        if match.group("export"):
            entry["exported"] = True
        signature = rest.rstrip("{").strip()
        if signature and kind != "class":
            entry["signature"] = signature[:200]
        elif kind == "class" and signature:
            entry["heritage"] = signature[:200]
        symbols.append(entry)
    # A method belongs to the class when that class is the last top-level declaration above it.
    for match in JS_METHOD.finditer(text):
        line = line_of(match.start())
        owner = None
        for symbol in symbols:
            if symbol["line"] >= line:
                break
            owner = symbol
        if owner is None or owner["kind"] != "class":
            continue
        member = {"kind": "method", "name": match.group("name"), "line": line, "signature": f"({match.group('params').strip()})" + (f": {match.group('ret').strip()}" if match.group("ret") else "")}
        owner.setdefault("members", []).append(member)
    return symbols


def outline(path):
    result = {"file": path}
    ext = os.path.splitext(path)[1].lower()
    language = "python" if ext in (".py", ".pyi") else "typescript" if ext in (".ts", ".tsx", ".mts", ".cts") else "javascript" if ext in (".js", ".mjs", ".cjs", ".jsx") else None
    if language is None:
        result["error"] = "not a Python, JavaScript or TypeScript file (by extension)"
        return result
    result["language"] = language
    _, text, error = _common.read_text(path, MAX_BYTES)
    if error:
        result["error"] = error
        return result
    result["lines"] = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    try:
        if language == "python":
            symbols, doc = python_symbols(text, path)
            if doc:
                result["doc"] = doc
        else:
            symbols = js_symbols(text)
    except SyntaxError as error:
        result["error"] = f"syntax error at line {error.lineno}: {error.msg}"
        return result
    if len(symbols) > MAX_SYMBOLS:
        symbols = symbols[:MAX_SYMBOLS]
        result["symbols_truncated"] = True
    result["symbols"] = symbols
    return result


def handle(task):
    files = _common.read_files(task, fail)
    return {"files": [outline(f) for f in files]}


def main():
    _common.serve(handle)


if __name__ == "__main__":
    main()
