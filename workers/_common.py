"""Shared by the bundled workers: the serve loop (cold and warm), reading the input, reading files safely.

Not a worker (the catalog skips names starting with "_"). A worker imports it with `import _common`:
Python puts the script's folder on sys.path, symlinks resolved, so a symlink to a bundled worker
in another workers folder still finds it. Standard library only, and cheap to import.

A worker is written once as `handle(task) -> result` and ends with `_common.serve(handle)`: run
cold (by hand, or one process per task) it reads its arguments and stdin; run warm (the server
sets MONITOR_WARM=1) it serves one task per request line on fd 3 and replies on fd 4. See
workers/README.md, "Warm workers".
"""
import io
import json
import os
import stat
import sys

REQUESTS_FD = 3
REPLIES_FD = 4


class Task:
    """One task's input: `args` (list of str), `stdin` (text or None), `json` (the value of a JSON
    input, else None) and `env` (its MONITOR_* variables, already set in os.environ while it runs).

    A JSON input is also `stdin` as one line of JSON, as a cold worker reads it."""

    def __init__(self, args, env, stdin=None, json_value=None, json_given=False):
        self.args = args
        self.env = env
        self._stdin = stdin
        self._json = json_value
        self._json_given = json_given

    @property
    def stdin(self):
        if self._stdin is None and self._json_given:
            self._stdin = json.dumps(self._json, separators=(",", ":"), ensure_ascii=False) + "\n"
        return self._stdin or None

    @property
    def json(self):
        return self._json


class ColdTask(Task):
    """The task of a cold run: sys.argv and stdin, read only when asked for (so a worker given
    arguments never waits on a stdin nobody closes)."""

    def __init__(self, fail):
        super().__init__(sys.argv[1:], monitor_env())
        self._fail = fail
        self._stdin_read = False
        self._json_parsed = False

    @property
    def stdin(self):
        if not self._stdin_read:
            self._stdin = stdin_text()
            self._stdin_read = True
        return self._stdin or None

    @property
    def json(self):
        if not self._json_parsed:
            self._json_parsed = True
            text = self.stdin
            if os.environ.get("MONITOR_STDIN_FORMAT") == "json" and text is not None:
                self._json = load_json(text, self._fail)
        return self._json


def monitor_env():
    return {key: value for key, value in os.environ.items() if key.startswith("MONITOR_")}


def serve(handle, name=None):
    """Runs `handle(task)` cold (once, on sys.argv and stdin) or warm (MONITOR_WARM=1: once per
    request on fd 3, each answered on fd 4) and prints or sends what it returns: a str as is,
    anything else as one compact JSON document; None sends nothing.

    `name` prefixes input errors on stderr (default: the script's file name without extension).
    """
    name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0] or "worker"
    if os.environ.get("MONITOR_WARM") == "1":
        serve_warm(handle, name)
        return
    result = handle(ColdTask(failer(name)))
    if isinstance(result, str):
        sys.stdout.write(result)
    elif result is not None:
        write_json(result)


def serve_warm(handle, name):
    # Not inherited: a child of a task must neither run warm itself nor hold the protocol pipes open.
    del os.environ["MONITOR_WARM"]
    try:
        os.set_inheritable(REQUESTS_FD, False)
        os.set_inheritable(REPLIES_FD, False)
    except OSError:
        sys.stderr.write(f"{name}: MONITOR_WARM=1 but fd 3 and fd 4 are not open (the server passes them); unset MONITOR_WARM to run it cold\n")
        sys.exit(2)
    home = os.getcwd()
    with open(REQUESTS_FD, "rb") as requests:
        for line in requests:
            if line.strip():
                send_reply(run_request(handle, name, line, home))


def run_request(handle, name, line, home):
    """The reply (a dict) to one request line. What the task changed for itself (environment, argv,
    std streams, working folder) is undone, and its output flushed, before this returns."""
    request_id = None
    try:
        request = json.loads(line)
        request_id = request.get("id") if isinstance(request, dict) else None
        task = task_of(request)
    except (ValueError, TypeError) as error:
        sys.stderr.write(f"{name}: bad request ({error}): {line[:200]!r}\n")
        flush_quietly(sys.stderr)
        return {"id": request_id, "exit_code": 1}
    saved_env = {key: os.environ.get(key) for key in task.env}
    saved = (sys.argv, sys.stdin, sys.stdout, sys.stderr)
    reply = {"id": request_id, "exit_code": 0}
    try:
        os.environ.update(task.env)
        # Code written for cold runs still finds its input where it looks for it.
        sys.argv = saved[0][:1] + task.args
        sys.stdin = io.StringIO(task.stdin or "")
        result = handle(task)
        if isinstance(result, str):
            reply["output"] = result
        elif result is not None:
            reply["result"] = result
    except SystemExit as stop:
        reply["exit_code"] = exit_status(stop.code)
    except Exception:
        import traceback

        traceback.print_exc()
        reply["exit_code"] = 1
    finally:
        # The task's log must be in its pipes before the reply that ends it.
        flush_quietly(sys.stdout)
        flush_quietly(sys.stderr)
        sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
        flush_quietly(sys.stdout)
        flush_quietly(sys.stderr)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            if os.getcwd() != home:
                os.chdir(home)
        except OSError:
            pass
    return reply


def task_of(request):
    if not isinstance(request, dict) or "id" not in request:
        raise ValueError("not an object with an id")
    args = request.get("args") or []
    env = request.get("env") or {}
    stdin = request.get("stdin")
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise ValueError("args must be a list of strings")
    if not isinstance(env, dict) or not all(isinstance(value, str) for value in env.values()):
        raise ValueError("env must map names to strings")
    if stdin is not None and not isinstance(stdin, str):
        raise ValueError("stdin must be a string")
    return Task(args, env, stdin, request.get("json"), "json" in request)


def exit_status(code):
    """The status a process ending with SystemExit(code) would have."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code % 256
    sys.stderr.write(f"{code}\n")
    return 1


def send_reply(reply):
    try:
        line = json.dumps(reply, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        # Not representable in JSON (NaN, a set): sent as the text a cold run would print, or failed like one.
        result = reply.pop("result", None)
        try:
            reply["output"] = json.dumps(result, separators=(",", ":")) + "\n"
        except (TypeError, ValueError):
            import traceback

            traceback.print_exc()
            flush_quietly(sys.stderr)
            reply = {"id": reply["id"], "exit_code": 1}
        line = json.dumps(reply, separators=(",", ":"))
    data = memoryview((line + "\n").encode())
    try:
        while data:
            data = data[os.write(REPLIES_FD, data):]
    except OSError:
        # The server is gone or closed the channel: nobody is left to serve.
        raise SystemExit(1)


def flush_quietly(stream):
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


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


NO_INPUT = object()


def json_input(task, fail):
    """The task's JSON value: its `json`, or its stdin text parsed as JSON (run by hand, JSON is just
    piped in); NO_INPUT when it gave neither (no stdin, or only blanks). Not JSON: fail()."""
    if task._json_given:
        return task.json
    text = task.stdin
    if text is None or not text.strip():
        return NO_INPUT
    return load_json(text, fail)


def read_files(task, fail):
    """The file paths, at least one: the arguments, or {"files": [...]} (or a bare list) as JSON on stdin."""
    if task.args:
        return task.args
    request = json_input(task, fail)
    if request is NO_INPUT:
        fail("give file paths as arguments, or {\"files\": [...]} as JSON on stdin")
    files = request.get("files") if isinstance(request, dict) else request
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        fail('expected {"files": ["path", ...]} on stdin')
    if not files:
        fail("no files given")
    return files


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
