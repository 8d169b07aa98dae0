"""The spawn helper: starts the script kind's cold tasks for the server (see src/pools/script/spawner.ts).

Node's spawn forks the whole server on its main thread; this small long-lived process starts each
task instead (Python's subprocess uses vfork), in a session and process group of its own, writes
its stdin, reaps it and relays its stdout, stderr and exit status.

Protocol (the server is the only client):
- Requests arrive as JSON lines on stdin:
  {"op": "start", "id": N, "file", "args", "cwd", "env", "stdin": text or null}
  {"op": "pause" | "resume" | "close", "id": N, "stream": 0 (stdout) or 1 (stderr)}
  {"op": "sweep", "procs": [[pid, start], ...]}: processes the server found whose parent is this
  helper (start: field 22 of /proc/<pid>/stat); each that is a stray (see Strays) is killed.
- Everything goes back as frames on stdout: [kind u8][task id u32][payload length u32][payload],
  big-endian. READY (id 0; payload: JSON {"subreaper": bool}) once at start; then per task
  STARTED (payload: the pid in ASCII) or FAILED (payload: JSON {"errno", "message"}), OUT / ERR
  (output bytes), OUT_END / ERR_END (a stream ended), EXIT (payload: JSON {"code", "signal"}).
- At EOF on stdin (the server closed it, or died) it SIGKILLs the process groups it started and
  the strays it adopted, and exits.

Strays: the helper is a child subreaper (prctl PR_SET_CHILD_SUBREAPER, through ctypes): a task's
descendant whose parent dies (a daemon's double fork, `setsid cmd &`) becomes its child, whatever
it did to its group, session or environment. It cannot belong to a task that started after it: one
that started before every task still running (any, when none runs) is a stray of ended tasks, and
is killed with its process group; others wait until the tasks running when they started have ended.

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
PR_SET_CHILD_SUBREAPER = 36
READY, STARTED, FAILED, OUT, ERR, OUT_END, ERR_END, EXIT = range(8)
CHUNK = 65536
# At most this many reads of a pipe when its worker exits (1 MiB: the most a pipe holds, by default).
MAX_REST_READS = 16

sel = selectors.DefaultSelector()
outbox: list[bytes] = []
tasks: dict[int, Task] = {}
by_pid: dict[int, Task] = {}
control = bytearray()
my_pid = os.getpid()
my_group = os.getpgrp()
subreaper = False
# The read end of the pipe a SIGCHLD wakes the loop through (set in main).
wake_r = -1
# Strays killed since the last look: an adopted process reaped now left its children (in groups or
# sessions of their own) to us; they are looked at after this round of the loop.
killed = False
look_again = False


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

    __slots__ = ("id", "proc", "streams", "stdin", "pending", "exited", "start")

    def __init__(self, tid: int, proc: subprocess.Popen[bytes]) -> None:
        self.id = tid
        self.proc = proc
        self.exited = False
        # Its start in clock ticks since boot (/proc), read when a sweep first needs it.
        self.start: Optional[int] = None
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


def on_output(stream: Stream) -> bool:
    """Relays one read of the pipe; True when it brought data (there may be more)."""
    if not stream.open or stream.paused:
        return False  # an event of this round for a pipe closed or paused earlier in the round
    try:
        data = os.read(stream.file.fileno(), CHUNK)
    except BlockingIOError:
        return False
    except OSError:
        data = b""
    if data:
        emit(stream.kind, stream.task.id, data)
        return True
    stream.close()
    emit(stream.kind + 2, stream.task.id)
    forget_if_done(stream.task)
    return False


def relay_rest(task: Task) -> None:
    """What the pipes hold when the worker has exited goes before its EXIT frame: the server need not
    wait for an EOF a descendant holding the pipes may never send (one still writing: read as before)."""
    for stream in task.streams:
        for _ in range(MAX_REST_READS):
            if not on_output(stream):
                break


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
    global look_again
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
            look_again = look_again or killed
            continue
        task.proc.returncode = status  # reaped here: Popen must not wait for it again
        relay_rest(task)
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
    if op == "sweep":
        for pid, begun in msg["procs"]:
            end_if_stray(pid, begun)
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


def stat_of(pid: int) -> Optional[tuple[str, int, int, int]]:
    """(state, parent, process group, start in clock ticks) from /proc/<pid>/stat, or None when gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            # Field 2 (the command name) is in parentheses and may itself hold spaces and ')'.
            fields = handle.read().rpartition(b")")[2].split()
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def oldest_running() -> Optional[int]:
    """The start of the oldest task whose worker has not been reaped; None when none runs."""
    for task in by_pid.values():
        if task.start is None:
            info = stat_of(task.proc.pid)
            # Unreadable: it counts as started now, which protects every stray there is.
            task.start = info[3] if info else 1 << 62
    return min((task.start for task in by_pid.values() if task.start is not None), default=None)


def end_if_stray(pid: int, begun: Optional[int] = None) -> None:
    """Kills `pid` (and its process group) when it is a stray: see Strays above."""
    global killed
    if not subreaper or pid in by_pid or pid <= 1:
        return
    info = stat_of(pid)
    # Only our own children: a pid cannot be given to another process before we reap it.
    if info is None or info[1] != my_pid or info[0] == "Z" or (begun is not None and info[3] != begun):
        return
    oldest = oldest_running()
    if oldest is not None and info[3] >= oldest:
        return
    group = info[2]
    try:
        if group > 1 and group != my_group and group not in by_pid:
            os.killpg(group, signal.SIGKILL)
    except OSError:
        pass  # gone already
    try:
        os.kill(pid, signal.SIGKILL)
        killed = True
    except OSError:
        pass


def end_strays() -> None:
    """Looks through /proc for the children this helper adopted and ends the strays among them."""
    global look_again, killed
    look_again = killed = False
    if not subreaper:
        return
    for pid in [int(name) for name in os.listdir("/proc") if name.isdigit()]:
        end_if_stray(pid)


def shutdown() -> None:
    # The server closed the channel or is gone: nothing it started may outlive it.
    for task in tasks.values():
        try:
            os.killpg(task.proc.pid, signal.SIGKILL)
        except OSError:
            pass
    by_pid.clear()
    end_strays()
    sys.exit(0)


def become_subreaper() -> bool:
    """Makes orphaned descendants of the tasks this helper's children (see Strays); False where it cannot."""
    try:
        import ctypes

        return ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def main() -> None:
    global wake_r, subreaper
    # Before any task starts: an orphan of one started earlier would go to init.
    subreaper = become_subreaper()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    sel.register(wake_r, selectors.EVENT_READ, (on_wake, None))
    sel.register(0, selectors.EVENT_READ, (on_control, None))
    emit(READY, 0, json.dumps({"subreaper": subreaper}).encode())
    flush()
    while True:
        for key, _ in sel.select():
            handler: Callable[[Any], None]
            handler, arg = key.data
            handler(arg)
        if look_again:
            end_strays()
        flush()


if __name__ == "__main__":
    main()
