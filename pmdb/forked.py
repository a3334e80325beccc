"""Work done by a forked copy of pmdb on another CPU while pmdb itself goes on.

Opening a kernel dump with its debug vmlinux is a chain of CPU-bound steps in one Python
thread (kallsyms, BTF, the DWARF name index), and a machine that debugs dumps has more than
one CPU. A step whose result is wanted later (the first DWARF units a type query scans, the
second half of the kallsyms names) is handed to a child made by fork: it shares the
parent's state as it is at that moment without copying or pickling it, and hands back at
most one bytes object through a pipe.

The child never touches the terminal (its stdio is /dev/null, ^C is the parent's), never
runs the parent's exit handlers, and is killed when its result is not wanted. Anything that
goes wrong in it (an exception, a crash, a hang past the parent's patience) means only that
the parent does the work itself. Where fork would be unsafe (no fork, other threads running:
a child would inherit their locks held) or useless (one CPU), nothing is started.

Low layer: imports nothing from pmdb.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

_children: list[int] = []           # started and not yet reaped
PATIENCE = 10.0                     # seconds a parent waits for a result, at most (they take ms)


def can_fork() -> bool:
    """Whether a child would run beside the parent, safely: fork exists, this process has
    more than one CPU to run on, and no other thread is running."""
    return hasattr(os, "fork") and single_threaded() and cpus() > 1


def single_threaded() -> bool:
    """No other thread is running (a forked child would inherit the locks they hold)."""
    return threading.active_count() == 1


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Child:
    """A forked child computing one bytes result (or None) for the parent."""

    def __init__(self, pid: int, pipe: int) -> None:
        self.pid = pid
        self._pipe: int | None = pipe           # None once closed

    def result(self, timeout: float = PATIENCE) -> bytes | None:
        """The child's bytes, waiting at most ``timeout`` seconds; None when it failed, sent
        nothing, or is too slow (then it is killed)."""
        pipe = self._pipe
        if pipe is None:
            return None
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        ready = select.poll()                        # (select() cannot wait on an fd past 1023)
        ready.register(pipe, select.POLLIN)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not ready.poll(left * 1000):
                    self.cancel()
                    return None
                chunk = os.read(pipe, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            self.cancel()
            return None
        self._close_pipe()
        ok = _reap(self.pid, block=True)
        return b"".join(chunks) if ok and chunks else None

    def cancel(self) -> None:
        """Stop the child (its result is not wanted) and reap it."""
        self._close_pipe()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        _reap(self.pid, block=True)

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.close(self._pipe)
            self._pipe = None


def start(work: Callable[[], bytes | None]) -> Child | None:
    """Run ``work`` in a forked child; None when no child can be started (can_fork)."""
    reap_finished()
    if not can_fork():
        return None
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:                                     # the child: never returns
        _run_child(work, read_end, write_end)
    os.close(write_end)
    _children.append(pid)
    return Child(pid, read_end)


def _run_child(work: Callable[[], bytes | None], read_end: int, write_end: int) -> None:
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.close(read_end)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):                         # a reader of the parent's output must
            os.dup2(null, fd)                        # not wait for this child's end of it
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 -- until os._exit
        data = work()
        if data is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        status = 0
    except BaseException:                            # noqa: BLE001 -- the parent does the work instead
        status = 1
    finally:
        os._exit(status)


def _reap(pid: int, *, block: bool) -> bool:
    """Collect a child's exit; True when it exited with status 0."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        done, status = pid, 1
    except OSError:
        return False
    if done == pid and pid in _children:
        _children.remove(pid)
    return done == pid and os.waitstatus_to_exitcode(status) == 0


def running() -> int:
    """How many started children are still at work (a CPU each)."""
    reap_finished()
    return len(_children)


def reap_finished() -> None:
    """Collect the children that have exited (so a long session leaves no zombies)."""
    for pid in list(_children):
        _reap(pid, block=False)
