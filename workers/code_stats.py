#!/usr/bin/env python3
# monitor: description: Per source file: language, lines, blank, comment and code lines, functions and classes defined (Python via ast, others by pattern; callbacks passed are not counted), and TODO/FIXME/HACK/XXX notes (comments starting with one) with line numbers.
# monitor: args: FILE... files to measure, relative to the task's cwd
# monitor: json: {"files": ["src/a.ts", ...]}
# monitor: output: json {"files": [{"file", "language", "lines", "blank", "comment", "code", "functions", "classes", "todos": [{"line", "tag", "text"}], "error"?}], "totals": {...}}
# monitor: isolated: yes
# monitor: warm: yes
# monitor: pack: files
"""Standard library only, so it starts fast; reads each file once. Warm-capable: nothing a task reads or
changes outlives it (module state is constants and compiled patterns)."""
import os
import re
import sys

import _common

MAX_BYTES = 20 * 1024 * 1024
MAX_TODOS = 200

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".java": "java", ".kt": "kotlin", ".scala": "scala", ".go": "go", ".rs": "rust", ".swift": "swift",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp", ".php": "php",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".rb": "ruby", ".pl": "perl", ".r": "r",
    ".yml": "yaml", ".yaml": "yaml", ".toml": "toml", ".ini": "ini", ".cfg": "ini",
    ".sql": "sql", ".lua": "lua", ".hs": "haskell",
    ".md": "markdown", ".json": "json", ".html": "html", ".css": "css", ".txt": "text",
}
C_STYLE = {"javascript", "typescript", "java", "kotlin", "scala", "go", "rust", "swift", "c", "cpp", "csharp", "php", "css"}
HASH_STYLE = {"python", "shell", "ruby", "perl", "r", "yaml", "toml", "ini"}
DASH_STYLE = {"sql", "lua", "haskell"}

# A note is a comment that starts with its tag ("# TODO: x", "// FIXME(me) y", " * HACK"); a comment or
# code that only mentions one (a list of tags, a pattern like this worker's own) is none.
NOTE = re.compile(r"(TODO|FIXME|HACK|XXX)\b(?![/|,.\w])[\s:(\-]*(.*)")
NOTE_LEAD = re.compile(r"[\s/*#!<\-\"']*")
COMMENT_MARKER = {"c": re.compile(r"//|/\*|^\s*\*"), "hash": re.compile(r"#"), "dash": re.compile(r"--"), "html": re.compile(r"<!--")}
# Parameters: one level of parentheses or braces inside (destructuring, a callback's type), no statement.
JS_PARAMS = r"\((?:[^(){};]|\([^(){};]*\)|\{[^{};]*\})*\)"
# Functions defined, not callbacks passed: `.map((x) => …)` and `.on("e", function () {…})` are none.
JS_FUNCTIONS = re.compile(
    r"\bfunction\b\s*\*?\s*[\w$]+\s*[<(]"  # function f(, function* f(
    r"|(?:[=:]|\bdefault)\s*(?:async\s+)?function\b\s*\*?\s*\("  # f = function (, export default function (
    # an arrow function given a name: const f = (…) => …, a class field `handle = async (e) => …`
    r"|^[ \t]*(?:(?:export|const|let|var|public|private|protected|static|readonly|override|declare)\s+)*"
    r"[\w$#.]+[ \t]*(?::[^=;]+?)?=\s*(?:async\s+)?(?:<[^<>]*>\s*)?(?:" + JS_PARAMS + r"|[\w$]+)\s*(?::\s*[^=;{]+?)?=>"
    # methods of classes and object literals
    r"|^[ \t]*(?:(?:public|private|protected|static|async|override|readonly|get|set|\*)\s+)*"
    r"(?!(?:if|for|while|switch|catch|with|return|function|new|else|do|typeof|await)\b)[\w$#]+\s*(?:<[^<>]*>)?"
    + JS_PARAMS + r"\s*(?::\s*[^;{=]+)?\{",
    re.M,
)
JS_CLASSES = re.compile(r"(?<![\w$.])class\s+[\w$]+")
OTHER_FUNCTIONS = {
    "go": re.compile(r"^\s*func\b", re.M),
    "rust": re.compile(r"\bfn\s+\w+", re.M),
    "shell": re.compile(r"^\s*(?:function\s+[\w-]+|[\w-]+\s*\(\s*\))\s*\{?", re.M),
    "ruby": re.compile(r"^\s*def\s+", re.M),
}
OTHER_CLASSES = {
    "ruby": re.compile(r"^\s*(?:class|module)\s+", re.M),
    "rust": re.compile(r"^\s*(?:pub\s+)?(?:struct|enum|trait)\s+\w+", re.M),
    "go": re.compile(r"^\s*type\s+\w+\s+(?:struct|interface)\b", re.M),
    "java": JS_CLASSES, "kotlin": JS_CLASSES, "scala": JS_CLASSES, "csharp": JS_CLASSES, "cpp": JS_CLASSES, "php": JS_CLASSES, "swift": JS_CLASSES,
}


fail = _common.failer("code_stats")


def comment_lines(lines, language):
    """Indices of lines that hold only comments (block comments included)."""
    found = set()
    if language in C_STYLE:
        in_block = False
        for i, line in enumerate(lines):
            s = line.strip()
            if in_block:
                found.add(i)
                if "*/" in s:
                    in_block = False
                    if s[s.index("*/") + 2:].strip():
                        found.discard(i)
                continue
            if s.startswith("//"):
                found.add(i)
            elif s.startswith("/*"):
                found.add(i)
                end = s.find("*/", 2)
                if end == -1:
                    in_block = True
                elif s[end + 2:].strip():
                    found.discard(i)
    elif language in HASH_STYLE:
        for i, line in enumerate(lines):
            s = line.lstrip()
            if s.startswith("#") and not (i == 0 and s.startswith("#!")):
                found.add(i)
    elif language in DASH_STYLE:
        for i, line in enumerate(lines):
            if line.lstrip().startswith("--"):
                found.add(i)
    elif language in {"html", "markdown"}:
        in_block = False
        for i, line in enumerate(lines):
            s = line.strip()
            if in_block or s.startswith("<!--"):
                found.add(i)
                in_block = "-->" not in s
    return found


def python_structure(text, path, comments):
    """(functions, classes) by ast; docstring lines count as comment lines."""
    import ast

    tree = ast.parse(text, filename=path)
    functions = classes = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            functions += not isinstance(node, ast.Lambda)
        if isinstance(node, ast.ClassDef):
            classes += 1
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                for line in range(first.lineno, (first.end_lineno or first.lineno) + 1):
                    comments.add(line - 1)
    return functions, classes


def note_in(line, in_comment, marker):
    """The note a line holds: its comment (the whole line inside a comment, else what follows the first
    comment marker; the whole line for a language without comments) starting with a tag."""
    start = 0
    if marker is not None and not in_comment:
        opened = marker.search(line)
        if opened is None:
            return None
        start = opened.end()
    text = line[start:]
    return NOTE.match(text, NOTE_LEAD.match(text).end())


def measure(path):
    result = {"file": path}
    language = LANGUAGES.get(os.path.splitext(path)[1].lower())
    if language is None and os.path.basename(path) in {"Makefile", "Dockerfile"}:
        language = "shell"
    result["language"] = language or "unknown"
    data, text, error = _common.read_text(path, MAX_BYTES)
    if error:
        result["error"] = error
        return result
    if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
        result["not_utf8"] = True
    lines = text.splitlines()
    comments = comment_lines(lines, language)
    functions = classes = None
    if language == "python":
        try:
            functions, classes = python_structure(text, path, comments)
        except SyntaxError as error:
            result["syntax_error"] = f"line {error.lineno}: {error.msg}"
    elif language in ("javascript", "typescript"):
        code = "\n".join("" if i in comments else line for i, line in enumerate(lines))
        functions = len(JS_FUNCTIONS.findall(code))
        classes = len(JS_CLASSES.findall(code))
    elif language in OTHER_FUNCTIONS or language in OTHER_CLASSES:
        code = "\n".join("" if i in comments else line for i, line in enumerate(lines))
        functions = len(OTHER_FUNCTIONS[language].findall(code)) if language in OTHER_FUNCTIONS else None
        classes = len(OTHER_CLASSES[language].findall(code)) if language in OTHER_CLASSES else None
    blank = sum(1 for line in lines if not line.strip())
    comment = sum(1 for i in comments if i < len(lines) and lines[i].strip())
    todos = []
    style = "c" if language in C_STYLE else "hash" if language in HASH_STYLE else "dash" if language in DASH_STYLE else "html" if language in {"html", "markdown"} else None
    marker = COMMENT_MARKER.get(style) if style else None
    for number, line in enumerate(lines, 1):
        if "TODO" in line or "FIXME" in line or "HACK" in line or "XXX" in line:
            match = note_in(line, number - 1 in comments, marker)
            if match:
                if len(todos) == MAX_TODOS:
                    result["todos_truncated"] = True
                    break
                todos.append({"line": number, "tag": match.group(1), "text": match.group(2).strip().rstrip("*/").strip()[:160]})
    result.update(lines=len(lines), blank=blank, comment=comment, code=len(lines) - blank - comment, bytes=len(data))
    if functions is not None:
        result["functions"] = functions
    if classes is not None:
        result["classes"] = classes
    result["todos"] = todos
    return result


def handle(task):
    files = _common.read_files(task, fail)
    results = [measure(f) for f in files]
    totals = {"files": len(results), "lines": 0, "blank": 0, "comment": 0, "code": 0, "functions": 0, "classes": 0, "todos": 0}
    for r in results:
        for key in ("lines", "blank", "comment", "code", "functions", "classes"):
            totals[key] += r.get(key) or 0
        totals["todos"] += len(r.get("todos", ()))
    return {"files": results, "totals": totals}


def main():
    _common.serve(handle)


if __name__ == "__main__":
    main()
