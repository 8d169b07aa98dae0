"""The spawn helper: starts the script kind's cold tasks for the server (see src/pools/script/spawner.ts).

Node's spawn forks the whole server on its main thread; this small long-lived process starts each
task instead (Python's subprocess uses vfork), in a session and process group of its own, writes
its stdin, reaps it and relays its stdout, stderr and exit status.

Protocol (the server is the only client):
- Requests arrive as JSON lines on stdin:
  {"op": "start", "id": N, "file", "args", "cwd", "env", "stdin": text or null}
  {"op": "pause" | "resume" | "close", "id": N, "stream": 0 (stdout) or 1 (stderr)}
- Everything goes back as frames on stdout: [kind u8][task id u32][payload length u32][payload],
  big-endian. READY (id 0) once at start; then per task STARTED (payload: the pid in ASCII) or
  FAILED (payload: JSON {"errno", "message"}), OUT / ERR (output bytes), OUT_END / ERR_END (a
  stream ended), EXIT (payload: JSON {"code", "signal"}).
- At EOF on stdin (the server closed it, or died) it SIGKILLs the process groups it started and exits.

Standard library only, Linux only (os.pipe2, vfork); the server runs it with -I -S.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import struct
import subprocess
import sys

# Types for the checker only: importing typing would add ~5 ms to every start of the helper.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Optional

HEADER = struct.Struct(">BII")
READY, STARTED, FAILED, OUT, ERR, OUT_END, ERR_END, EXIT = range(8)
CHUNK = 65536

sel = selectors.DefaultSelector()
outbox: list[bytes] = []
tasks: dict[int, Task] = {}
by_pid: dict[int, Task] = {}
control = bytearray()
# The read end of the pipe a SIGCHLD wakes the loop through (set in main).
wake_r = -1


def emit(kind: int, tid: int, payload: bytes = b"") -> None:
    outbox.append(HEADER.pack(kind, tid, len(payload)))
    if payload:
        outbox.append(payload)


def flush() -> None:
    # Blocking writes: when the server reads slowly, the helper waits and so do the workers' pipes.
    if outbox:
        data = memoryview(b"".join(outbox))
        outbox.clear()
        while data:
            data = data[os.write(1, data) :]


class Stream:
    """A task's stdout or stderr, read without blocking and relayed as OUT / ERR frames."""

    __slots__ = ("task", "kind", "file", "paused", "open")

    def __init__(self, task: Task, kind: int, file: IO[bytes]) -> None:
        self.task, self.kind, self.file, self.paused, self.open = task, kind, file, False, True
        os.set_blocking(file.fileno(), False)
        sel.register(file.fileno(), selectors.EVENT_READ, (on_output, self))

    def close(self) -> None:
        if self.open:
            self.open = False
            if not self.paused:
                sel.unregister(self.file.fileno())
            self.file.close()


class Task:
    """One started process: its streams, the stdin text not yet written, whether it was reaped."""

    __slots__ = ("id", "proc", "streams", "stdin", "pending", "exited")

    def __init__(self, tid: int, proc: subprocess.Popen[bytes]) -> None:
        self.id = tid
        self.proc = proc
        self.exited = False
        self.stdin: Optional[IO[bytes]] = None
        self.pending: Optional[memoryview] = None
        self.streams: tuple[Stream, ...] = ()


def popen(argv: list[str], msg: dict[str, Any], text: Optional[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=msg["cwd"],
        env=msg["env"],
        bufsize=0,
        stdin=subprocess.DEVNULL if text is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def start(msg: dict[str, Any]) -> None:
    tid: int = msg["id"]
    text: Optional[str] = msg.get("stdin")
    argv = [msg["file"], *msg["args"]]
    try:
        try:
            proc = popen(argv, msg, text)
        except OSError as e:
            if e.errno != errno.ENOEXEC:
                raise
            # As Node's spawn does (glibc's execvpe): a file the kernel cannot run goes to /bin/sh.
            proc = popen(["/bin/sh", *argv], msg, text)
    except OSError as e:
        emit(FAILED, tid, json.dumps({"errno": e.errno or 0, "message": e.strerror or str(e)}).encode())
        return
    except (ValueError, TypeError) as e:
        emit(FAILED, tid, json.dumps({"errno": errno.EINVAL, "message": str(e)}).encode())
        return
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
    task = Task(tid, proc)
    tasks[tid] = task
    by_pid[proc.pid] = task
    task.streams = (Stream(task, OUT, proc.stdout), Stream(task, ERR, proc.stderr))
    emit(STARTED, tid, str(proc.pid).encode())
    if text is not None and proc.stdin is not None:
        task.stdin = proc.stdin
        task.pending = memoryview(text.encode())
        os.set_blocking(proc.stdin.fileno(), False)
        write_stdin(task, False)


def write_stdin(task: Task, registered: bool = True) -> None:
    if task.stdin is None or task.pending is None:
        return  # an event of this round for a pipe closed earlier in the round
    fd = task.stdin.fileno()
    try:
        while task.pending:
            task.pending = task.pending[os.write(fd, task.pending) :]
    except BlockingIOError:
        if not registered:
            sel.register(fd, selectors.EVENT_WRITE, (write_stdin, task))
        return
    except OSError:
        pass  # EPIPE: the worker exited without reading all of it, which is not a failure.
    close_stdin(task, registered)


def close_stdin(task: Task, registered: bool) -> None:
    if task.stdin is not None:
        if registered:
            sel.unregister(task.stdin.fileno())
        task.stdin.close()
        task.stdin = None
        task.pending = None


def on_output(stream: Stream) -> None:
    if not stream.open or stream.paused:
        return  # an event of this round for a pipe closed or paused earlier in the round
    try:
        data = os.read(stream.file.fileno(), CHUNK)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        emit(stream.kind, stream.task.id, data)
        return
    stream.close()
    emit(stream.kind + 2, stream.task.id)
    forget_if_done(stream.task)


def forget_if_done(task: Task) -> None:
    if task.exited and not any(s.open for s in task.streams):
        close_stdin(task, task.pending is not None)
        tasks.pop(task.id, None)


def exit_status(status: int) -> dict[str, Any]:
    """A wait status as Node reports an exit: a code, or the name of the signal that ended it."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "SIG%d" % number
        return {"code": None, "signal": name}
    return {"code": os.WEXITSTATUS(status), "signal": None}


def on_wake(_: None) -> None:
    try:
        while os.read(wake_r, 512):
            pass
    except BlockingIOError:
        pass
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        task = by_pid.pop(pid, None)
        if task is None:
            continue
        task.proc.returncode = status  # reaped here: Popen must not wait for it again
        task.exited = True
        emit(EXIT, task.id, json.dumps(exit_status(status)).encode())
        forget_if_done(task)


def on_control(_: None) -> None:
    scan = len(control)
    chunk = os.read(0, 1 << 20)
    if not chunk:
        shutdown()
    control.extend(chunk)
    begin = 0
    while True:
        end = control.find(b"\n", scan)
        if end < 0:
            break
        handle(json.loads(control[begin:end]))
        begin = scan = end + 1
    del control[:begin]


def handle(msg: dict[str, Any]) -> None:
    op = msg["op"]
    if op == "start":
        start(msg)
        return
    task = tasks.get(msg["id"])
    if task is None:
        return
    stream = task.streams[msg["stream"]]
    if op == "close":
        stream.close()
        forget_if_done(task)
        return
    if not stream.open:
        return
    if op == "pause" and not stream.paused:
        sel.unregister(stream.file.fileno())
        stream.paused = True
    elif op == "resume" and stream.paused:
        sel.register(stream.file.fileno(), selectors.EVENT_READ, (on_output, stream))
        stream.paused = False


def shutdown() -> None:
    # The server closed the channel or is gone: nothing it started may outlive it.
    for task in tasks.values():
        try:
            os.killpg(task.proc.pid, signal.SIGKILL)
        except OSError:
            pass
    sys.exit(0)


def main() -> None:
    global wake_r
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    sel.register(wake_r, selectors.EVENT_READ, (on_wake, None))
    sel.register(0, selectors.EVENT_READ, (on_control, None))
    emit(READY, 0)
    flush()
    while True:
        for key, _ in sel.select():
            handler: Callable[[Any], None]
            handler, arg = key.data
            handler(arg)
        flush()


if __name__ == "__main__":
    main()
