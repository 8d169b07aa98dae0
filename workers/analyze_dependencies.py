#!/usr/bin/env python3
# monitor: description: The imports each source file makes (Python via ast; JS/TS import, export-from, require and dynamic import), split into internal (relative or a file in the repo), external (package name) and builtin (stdlib / node:).
# monitor: args: FILE... source files, relative to the task's cwd (taken as the repo root)
# monitor: json: {"files": ["src/a.ts", ...], "root": "repo root, default the cwd"}
# monitor: output: json {"root", "files": [{"file", "language", "internal": [{"specifier", "path", "line"}], "external": [{"specifier", "package", "line"}], "builtin": [...], "error"?}], "external_packages": [...]}
# monitor: isolated: yes
# monitor: warm: yes
# monitor: pack: files
"""Standard library only, so it starts fast; reads each file once. Warm-capable: nothing a task reads or
changes outlives it (module state is constants and compiled patterns)."""
import bisect
import os
import re
import sys

import _common

MAX_BYTES = 5 * 1024 * 1024
PY_EXTS = {".py", ".pyi", ".pyw"}
JS_EXTS = {".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts"}
JS_RESOLVE_EXTS = [".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".json"]
# ESM TypeScript imports name the compiled file ("./errors.js" for errors.ts).
JS_SWAPS = {".js": [".ts", ".tsx"], ".jsx": [".tsx"], ".mjs": [".mts"], ".cjs": [".cts"]}
NODE_BUILTINS = set(
    "assert async_hooks buffer child_process cluster console constants crypto dgram diagnostics_channel dns domain "
    "events fs http http2 https inspector module net os path perf_hooks process punycode querystring readline repl "
    "stream string_decoder sys timers tls trace_events tty url util v8 vm wasi worker_threads zlib test".split()
)
PY_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}


fail = _common.failer("analyze_dependencies")


def read_request(task):
    """(files, root) from args, or from the JSON value on stdin."""
    if task.args:
        return task.args, os.getcwd()
    request = _common.json_input(task, fail)
    if request is not _common.NO_INPUT:
        if isinstance(request, list):
            request = {"files": request}
        if not isinstance(request, dict) or not isinstance(request.get("files"), list):
            fail('expected {"files": ["path", ...]} on stdin')
        files = request["files"]
        if not all(isinstance(f, str) for f in files):
            fail("files must be strings")
        root = request.get("root") or os.getcwd()
        if not isinstance(root, str):
            fail("root must be a string")
        return files, os.path.abspath(root)
    fail("give file paths as arguments, or {\"files\": [...]} as JSON on stdin")


def rel(path, root):
    relative = os.path.relpath(path, root)
    return path if relative.startswith("..") else relative.replace(os.sep, "/")


# ---- Python ----

def py_module_file(base, parts):
    """base/a/b.py or base/a/b/__init__.py, if it exists."""
    target = os.path.join(base, *parts) if parts else base
    for candidate in (target + ".py", target + ".pyi", os.path.join(target, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    if parts and os.path.isdir(target):
        return target
    return None


def py_imports(path, text, root):
    import ast

    tree = ast.parse(text, filename=path)
    here = os.path.dirname(os.path.abspath(path))
    search = [here, root, os.path.join(root, "src")]
    out = []

    def absolute(module, line):
        parts = module.split(".")
        for base in search:
            for n in range(len(parts), 0, -1):
                found = py_module_file(base, parts[:n])
                if found:
                    return {"specifier": module, "kind": "internal", "path": rel(found, root), "line": line}
        top = parts[0]
        kind = "builtin" if top in PY_STDLIB or top in sys.builtin_module_names else "external"
        entry = {"specifier": module, "kind": kind, "line": line}
        if kind == "external":
            entry["package"] = top
        return entry

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append(absolute(alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append(absolute(node.module or "", node.lineno))
                continue
            base = here
            for _ in range(node.level - 1):
                base = os.path.dirname(base)
            parts = node.module.split(".") if node.module else []
            specifier = "." * node.level + (node.module or "")
            found = py_module_file(base, parts)
            if not node.module:
                # "from . import a, b": each name may be a submodule.
                for alias in node.names:
                    sub = py_module_file(base, [alias.name])
                    entry = {"specifier": specifier + alias.name if specifier.endswith(".") else specifier, "kind": "internal", "line": node.lineno}
                    entry["path"] = rel(sub or found, root) if (sub or found) else None
                    out.append(entry)
                continue
            out.append({"specifier": specifier, "kind": "internal", "path": rel(found, root) if found else None, "line": node.lineno})
    out.sort(key=lambda e: e["line"])
    return out


# ---- JavaScript / TypeScript ----

# Comments out, strings kept (with their offsets), so an import inside a comment is not counted.
JS_TOKENS = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`", re.S)
Q = r"(['\"])([^'\"\n]+)\1"
JS_PATTERNS = [
    ("import", re.compile(r"\bimport\s+(?:type\s+)?[\w*{}\s,$]+?\s+from\s*" + Q)),
    ("import", re.compile(r"(?<![\w.$])import\s*" + Q)),
    ("re-export", re.compile(r"\bexport\s+(?:type\s+)?(?:\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s*from\s*" + Q)),
    ("require", re.compile(r"(?<![\w.$])require\s*\(\s*" + Q + r"\s*\)")),
    ("dynamic", re.compile(r"(?<![\w.$])import\s*\(\s*" + Q + r"\s*\)")),
]


def strip_js_comments(text):
    def blank(match):
        token = match.group(0)
        if token.startswith("//") or token.startswith("/*"):
            return re.sub(r"[^\n]", " ", token)
        return token

    return JS_TOKENS.sub(blank, text)


def js_resolve(file_dir, specifier, root):
    target = os.path.normpath(os.path.join(root if specifier.startswith("/") else file_dir, specifier.lstrip("/") if specifier.startswith("/") else specifier))
    if os.path.isfile(target):
        return target
    stem, ext = os.path.splitext(target)
    for swap in JS_SWAPS.get(ext, []):
        if os.path.isfile(stem + swap):
            return stem + swap
    for ext in JS_RESOLVE_EXTS:
        if os.path.isfile(target + ext):
            return target + ext
    for ext in JS_RESOLVE_EXTS:
        index = os.path.join(target, "index" + ext)
        if os.path.isfile(index):
            return index
    return None


def js_package(specifier):
    parts = specifier.split("/")
    return "/".join(parts[:2]) if specifier.startswith("@") and len(parts) > 1 else parts[0]


def in_string(spans, span_starts, at):
    i = bisect.bisect_right(span_starts, at) - 1
    return i >= 0 and spans[i][0] < at < spans[i][1]


def js_imports(path, text, root):
    code = strip_js_comments(text)
    # A keyword inside a string ('import', "require(x)") is text, not an import.
    strings = [m.span() for m in JS_TOKENS.finditer(code) if m.group(0)[:1] in "\"'`"]
    string_starts = [a for a, _ in strings]
    starts = _common.line_starts(code)
    file_dir = os.path.dirname(os.path.abspath(path))
    seen = set()
    out = []
    for via, pattern in JS_PATTERNS:
        for match in pattern.finditer(code):
            specifier = match.group(2)
            at = match.start()
            if (at, specifier) in seen or in_string(strings, string_starts, at):
                continue
            seen.add((at, specifier))
            line = _common.line_of(starts, at)
            entry = {"specifier": specifier, "line": line}
            if via != "import":
                entry["via"] = via
            if specifier.startswith(".") or specifier.startswith("/"):
                found = js_resolve(file_dir, specifier, root)
                entry.update(kind="internal", path=rel(found, root) if found else None)
            elif specifier.startswith("node:") or specifier.split("/")[0] in NODE_BUILTINS or specifier.startswith("bun:"):
                entry["kind"] = "builtin"
            else:
                # A bare path that is a file of the repo (baseUrl-style imports) is internal too.
                found = js_resolve(root, specifier, root) if "/" in specifier else None
                if found:
                    entry.update(kind="internal", path=rel(found, root))
                else:
                    entry.update(kind="external", package=js_package(specifier))
            out.append(entry)
    out.sort(key=lambda e: e["line"])
    return out


def language_of(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in PY_EXTS:
        return "python"
    if ext in {".ts", ".tsx", ".mts", ".cts"}:
        return "typescript"
    if ext in JS_EXTS:
        return "javascript"
    return None


def analyze(path, root):
    result = {"file": path}
    language = language_of(path)
    if language is None:
        result["error"] = "not a Python, JavaScript or TypeScript file (by extension)"
        return result
    result["language"] = language
    _, text, error = _common.read_text(path, MAX_BYTES)
    if error:
        result["error"] = error
        return result
    try:
        imports = py_imports(path, text, root) if language == "python" else js_imports(path, text, root)
    except SyntaxError as error:
        result["error"] = f"syntax error at line {error.lineno}: {error.msg}"
        return result
    for kind in ("internal", "external", "builtin"):
        result[kind] = [{k: v for k, v in e.items() if k != "kind"} for e in imports if e["kind"] == kind]
    return result


def handle(task):
    files, root = read_request(task)
    if not files:
        fail("no files given")
    results = [analyze(f, root) for f in files]
    packages = sorted({e["package"] for r in results for e in r.get("external", ())})
    return {"root": root, "files": results, "external_packages": packages}


def main():
    _common.serve(handle)


if __name__ == "__main__":
    main()
