"""Shared by the bundled workers: reading the input list and reading files safely.

Not a worker (the catalog skips names starting with "_"). A worker imports it with `import _common`:
Python puts the script's folder on sys.path, symlinks resolved, so a symlink to a bundled worker
in another workers folder still finds it. Standard library only, and cheap to import.
"""
import json
import os
import stat
import sys


def failer(name):
    """A fail(message) for the worker `name`: the message on stderr, exit code 2 (the input is wrong)."""

    def fail(message):
        sys.stderr.write(f"{name}: {message}\n")
        sys.exit(2)

    return fail


def stdin_text():
    """The text on stdin when the task gave some (JSON, or a pipe), else "" (a terminal is not read)."""
    if os.environ.get("MONITOR_STDIN_FORMAT") == "json" or not sys.stdin.isatty():
        return sys.stdin.read()
    return ""


def load_json(text, fail):
    try:
        return json.loads(text)
    except ValueError as error:
        fail(f"stdin is not JSON: {error}")


def read_files(fail):
    """The file paths, at least one: the arguments, or {"files": [...]} (or a bare list) as JSON on stdin."""
    if len(sys.argv) > 1:
        return sys.argv[1:]
    text = stdin_text()
    if text.strip():
        request = load_json(text, fail)
        files = request.get("files") if isinstance(request, dict) else request
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            fail('expected {"files": ["path", ...]} on stdin')
        if not files:
            fail("no files given")
        return files
    fail("give file paths as arguments, or {\"files\": [...]} as JSON on stdin")


def write_json(value):
    """The worker's one JSON document on stdout, compact."""
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")


def line_starts(text):
    starts = [0]
    find = text.find
    at = find("\n")
    while at != -1:
        starts.append(at + 1)
        at = find("\n", at + 1)
    return starts


def line_of(starts, offset):
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] <= offset:
            lo = mid + 1
        else:
            hi = mid
    return lo


def allowed_roots():
    """The folders the server allows (MONITOR_ALLOWED_ROOTS, os.pathsep-separated); None when run by hand."""
    value = os.environ.get("MONITOR_ALLOWED_ROOTS")
    if value is None:
        return None
    return [os.path.realpath(root) for root in value.split(os.pathsep) if root]


ALLOWED_ROOTS = allowed_roots()


def outside_roots(path):
    """True when the path, symlinks followed, is outside every allowed folder."""
    if ALLOWED_ROOTS is None:
        return False
    real = os.path.realpath(path)
    return not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in ALLOWED_ROOTS)


def read_file(path, limit):
    """(bytes, None) for a regular file inside the allowed folders and within `limit`, else (None, error).

    Opened without blocking and checked before reading: a FIFO, a device such as /dev/zero or a
    folder is skipped instead of hanging the task or reading forever; at most limit+1 bytes are read.
    """
    if outside_roots(path):
        return None, "outside the allowed folders (the server's --root); skipped"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        return None, f"unreadable: {error.strerror or error}"
    try:
        info = os.fstat(fd)
    except OSError as error:
        os.close(fd)
        return None, f"unreadable: {error.strerror or error}"
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None, "not a regular file (a folder, FIFO or device); skipped"
    if info.st_size > limit:
        os.close(fd)
        return None, f"larger than {limit} bytes; skipped"
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            return None, f"unreadable: {error.strerror or error}"
    if len(data) > limit:
        return None, f"larger than {limit} bytes; skipped"
    return data, None


def read_text(path, limit):
    """(data, text, None) for a readable text file (decoded as UTF-8, bad bytes replaced), else (None, None, error).

    A NUL byte in the first 8 KiB makes it a "binary file".
    """
    data, error = read_file(path, limit)
    if error:
        return None, None, error
    if b"\0" in data[:8192]:
        return None, None, "binary file"
    return data, data.decode("utf-8", errors="replace"), None
