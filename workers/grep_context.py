#!/usr/bin/env python3
# monitor: description: Regex search (Python re syntax) over files or folders, returning each match with N lines of context as JSON, up to a match cap.
# monitor: args: [--context N] [--max-matches N] [-i] [-F] [--include GLOB] PATTERN PATH... (folders are searched recursively, skipping dot-folders and node_modules)
# monitor: json: {"pattern": "regex", "files": ["src", "README.md"], "context": 2, "max_matches": 100, "ignore_case": false, "fixed": false, "include": "*.ts"}
# monitor: output: json {"pattern", "files": [{"file", "matches", "blocks": [{"start", "lines": [...], "match_lines": [...]}]}], "total_matches", "files_searched", "truncated"}
# monitor: isolated: yes
# monitor: warm: yes
"""Standard library only, so it starts fast; reads each file once. Warm-capable: nothing a task reads or
changes outlives it (module state is constants and compiled patterns)."""
import fnmatch
import os
import re
import sys

import _common

MAX_BYTES = 20 * 1024 * 1024
MAX_LINE_CHARS = 400
SKIP_DIRS = {"node_modules", "__pycache__", "dist", "build", "target", "venv"}


fail = _common.failer("grep_context")


def number(value, name, low, high):
    try:
        n = int(value)
    except (TypeError, ValueError):
        fail(f"{name} must be a whole number, got {value!r}")
    if not low <= n <= high:
        fail(f"{name} must be from {low} to {high}, got {n}")
    return n


def read_request(task):
    request = {"context": 2, "max_matches": 100, "ignore_case": False, "fixed": False, "include": None}
    argv = task.args
    if argv:
        positional = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg in ("--context", "-C", "--max-matches", "--include") and i + 1 < len(argv):
                key = {"--context": "context", "-C": "context", "--max-matches": "max_matches", "--include": "include"}[arg]
                request[key] = argv[i + 1]
                i += 2
                continue
            if arg in ("-i", "--ignore-case"):
                request["ignore_case"] = True
            elif arg in ("-F", "--fixed"):
                request["fixed"] = True
            elif arg == "--":
                positional.extend(argv[i + 1:])
                break
            else:
                positional.append(arg)
            i += 1
        if len(positional) < 2:
            fail("usage: grep_context.py [--context N] [--max-matches N] [-i] [-F] [--include GLOB] PATTERN PATH...")
        request["pattern"], request["files"] = positional[0], positional[1:]
    else:
        given = _common.json_input(task, fail)
        if given is _common.NO_INPUT:
            fail('give PATTERN PATH... as arguments, or {"pattern": ..., "files": [...]} as JSON on stdin')
        if not isinstance(given, dict):
            fail("expected a JSON object on stdin")
        request.update({k: v for k, v in given.items() if v is not None})
    if not isinstance(request.get("pattern"), str) or request["pattern"] == "":
        fail("pattern must be a non-empty string")
    files = request.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        fail("files must be a non-empty list of paths")
    request["files"] = files
    request["context"] = number(request["context"], "context", 0, 50)
    request["max_matches"] = number(request["max_matches"], "max_matches", 1, 100000)
    return request


def walk(paths, include):
    """(path, named): explicitly named files first-class; files found in folders filtered by `include`."""
    for path in paths:
        # A folder outside the allowed ones is not listed: it comes back as one refused entry.
        if os.path.isdir(path) and not _common.outside_roots(path):
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
                for name in sorted(names):
                    if include is None or fnmatch.fnmatch(name, include):
                        yield os.path.join(folder, name), False
        else:
            yield path, True


def clip(line):
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "…"


def search(path, regex, context, budget):
    """(entry or None, matches used). Explicit files always get an entry; folder files only on a hit."""
    _, text, error = _common.read_text(path, MAX_BYTES)
    if error:
        return {"file": path, "error": error}, 0
    lines = text.splitlines()
    hits = []
    for index, line in enumerate(lines):
        if regex.search(line):
            hits.append(index)
            if len(hits) == budget:
                break
    entry = {"file": path, "matches": len(hits)}
    if not hits:
        return entry, 0
    blocks = []
    for index in hits:
        start = max(0, index - context)
        end = min(len(lines), index + context + 1)
        if blocks and start <= blocks[-1]["_end"]:
            block = blocks[-1]
            block["lines"].extend(clip(l) for l in lines[block["_end"]:end])
            block["_end"] = max(block["_end"], end)
            block["match_lines"].append(index + 1)
        else:
            blocks.append({"start": start + 1, "lines": [clip(l) for l in lines[start:end]], "match_lines": [index + 1], "_end": end})
    for block in blocks:
        del block["_end"]
    entry["blocks"] = blocks
    return entry, len(hits)


def handle(task):
    request = read_request(task)
    source = re.escape(request["pattern"]) if request["fixed"] else request["pattern"]
    try:
        regex = re.compile(source, re.IGNORECASE if request["ignore_case"] else 0)
    except re.error as error:
        fail(f"pattern is not a valid regular expression: {error}")
    budget = request["max_matches"]
    results, total, searched, truncated = [], 0, 0, False
    for path, named in walk(request["files"], request.get("include")):
        if total >= budget:
            truncated = True
            break
        entry, used = search(path, regex, request["context"], budget - total)
        searched += 1
        total += used
        if named or used or ("error" in entry and entry["error"] != "binary file"):
            results.append(entry)
    if total >= budget:
        truncated = True
    return {"pattern": request["pattern"], "files": results, "total_matches": total, "files_searched": searched, "truncated": truncated}


def main():
    _common.serve(handle)


if __name__ == "__main__":
    main()
