#!/usr/bin/env python3
# monitor: description: Answer checker: accepts (exit 0) an answer whose unified diff `git apply --check` accepts in the task's folder; otherwise exit 1 with why on stdout (git's message, or "the answer contains no unified diff"); exit 2 when git is missing. For lmstudio checks: {script: {worker: "check_patch.py"}}.
# monitor: args: [-p N] [--recount] [--ignore-whitespace] (given to git apply)
# monitor: stdin: the answer: a unified diff, bare or in ```diff fences among other text
# monitor: json: {"patch": "diff --git a/... b/..."} (a JSON answer with a patch, or diff, field)
# monitor: output: text "the patch applies (N files)", or why it does not
# monitor: isolated: yes
"""Standard library only, plus git. Nothing is written: `git apply --check` only reads the files the
patch names (git refuses paths outside the working tree). Cold, not warm: its verdict is its stdout
with exit 1, which _common.serve's warm loop cannot send (warm, what a task prints is its log), and
each check starts git anyway."""
import json
import os
import re
import subprocess
import sys

import _common

GIT_TIMEOUT_SECONDS = 60
MAX_PATCH_CHARS = 16 * 1024 * 1024
GIT_LINES = 8
USAGE = "check_patch.py [-p N] [--recount] [--ignore-whitespace] < answer"
NO_DIFF = "the answer contains no unified diff"

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
DIFF_LANGUAGES = {"diff", "patch", "udiff"}
GIT_HEADER = re.compile(r"^diff --git ", re.M)
OLD_FILE = re.compile(r"^--- \S", re.M)
NEW_FILE = re.compile(r"^\+\+\+ \S", re.M)
HUNK = re.compile(r"^@@ -\d", re.M)
# Variables that would point git at another repository than the task's folder.
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES")

fail = _common.failer("check_patch")


def git_options(args):
    """The git apply options the task may give; anything else is refused."""
    options = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--recount", "--ignore-whitespace"):
            options.append(arg)
        elif arg == "-p" and i + 1 < len(args):
            options.append("-p" + strip_count(args[i + 1]))
            i += 1
        elif arg.startswith("-p") and len(arg) > 2:
            options.append("-p" + strip_count(arg[2:]))
        else:
            fail(f"unknown argument {arg!r}; usage: {USAGE}")
        i += 1
    return options


def strip_count(value):
    if not value.isdigit() or int(value) > 100:
        fail(f"-p takes a number of leading path components (0 to 100), got {value!r}")
    return str(int(value))


def answer_of(task):
    """The answer's text that should hold the diff: a JSON answer's patch (or diff) field, else the text."""
    text = task.stdin or ""
    value = None
    if os.environ.get("MONITOR_STDIN_FORMAT") == "json":
        value = task.json
    elif text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
    if isinstance(value, dict):
        field = value.get("patch", value.get("diff"))
        return field if isinstance(field, str) else ""
    if isinstance(value, str):
        return value
    return text


def looks_like_diff(text):
    return bool(GIT_HEADER.search(text)) or bool(OLD_FILE.search(text) and NEW_FILE.search(text) and HUNK.search(text))


def diff_in(text):
    """The unified diff the answer holds: its ```diff fences joined (else fences that hold one), else the
    text from its first diff header; None when it holds none."""
    fences = [(language.lower(), body) for _, language, body in FENCE.findall(text)]
    for wanted in (lambda language: language in DIFF_LANGUAGES, lambda language: True):
        bodies = [body for language, body in fences if wanted(language) and looks_like_diff(body)]
        if bodies:
            return "".join(ended(body) for body in bodies)
    if not looks_like_diff(text):
        return None
    starts = [m.start() for m in (GIT_HEADER.search(text), OLD_FILE.search(text)) if m]
    return ended(text[min(starts):])


def ended(patch):
    """One newline at the end: empty lines after the last hunk (the answer's own newline) would count as
    context under --recount."""
    return patch.rstrip("\n") + "\n"


def git_env():
    env = {key: value for key, value in os.environ.items() if key not in GIT_LOCATION_VARS}
    # English messages (the reason goes to a model), and never a prompt for anything.
    env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"})
    return env


def git_apply_check(patch, options):
    """(ok, git's message)."""
    command = ["git", "-c", "core.fsmonitor=false", "apply", "--check", *options, "-"]
    try:
        run = subprocess.run(
            command,
            input=patch.encode("utf-8", "surrogateescape"),
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            env=git_env(),
        )
    except FileNotFoundError:
        fail("git was not found on PATH: this checker runs `git apply --check`; install git (or put it on the server's PATH)")
    except subprocess.TimeoutExpired:
        fail(f"git apply --check took longer than {GIT_TIMEOUT_SECONDS} s")
    message = (run.stderr or run.stdout).decode("utf-8", "replace").strip()
    return run.returncode == 0, message


def reject(reason):
    """Ends the task refusing the answer: `reason` on stdout, exit 1."""
    sys.stdout.write(reason + "\n")
    sys.stdout.flush()
    raise SystemExit(1)


def handle(task):
    options = git_options(task.args)
    answer = answer_of(task)
    if len(answer) > MAX_PATCH_CHARS:
        fail(f"the answer is over {MAX_PATCH_CHARS} characters")
    patch = diff_in(answer)
    if patch is None:
        reject(NO_DIFF)
    ok, message = git_apply_check(patch, options)
    if not ok:
        lines = [line for line in message.splitlines() if line.strip()][:GIT_LINES]
        reject("the answer's patch does not apply:\n" + "\n".join(lines or ["git apply --check refused it"]))
    files = len(GIT_HEADER.findall(patch)) or len(NEW_FILE.findall(patch))
    return f"the patch applies ({files} file{'' if files == 1 else 's'})\n"


if __name__ == "__main__":
    _common.serve(handle)
