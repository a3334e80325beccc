"""Timing one core: pmdb in-process (open + ``$c`` of every thread) and gdb as a subprocess."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session


@dataclass
class PmdbRun:
    open_s: float     # open_target: headers, notes, objects, symbols
    total_s: float    # open + a session + $c for every thread (output formatted)
    threads: int
    frames: int


def best_of(n: int, run: Callable[[], float]) -> float:
    """The fastest of n runs: the figure least disturbed by the rest of the machine."""
    return min(run() for _ in range(max(n, 1)))


def pmdb_once(core: Path) -> PmdbRun:
    """Open the core and print every thread's $c, in this process, as a user session would."""
    t0 = time.perf_counter()
    target = open_target(str(core), config=Config())
    t1 = time.perf_counter()
    out = io.StringIO()
    session = Session(target, stdout=out, stderr=io.StringIO())
    threads = list(target.threads())
    for thread in threads:
        session.run_line(f"0t{thread.id}$c")
    t2 = time.perf_counter()
    target.close()
    return PmdbRun(t1 - t0, t2 - t0, len(threads), out.getvalue().count("\n"))


def pmdb_best(core: Path, n: int) -> PmdbRun:
    runs = [pmdb_once(core) for _ in range(max(n, 1))]
    best = min(runs, key=lambda r: r.total_s)
    best.open_s = min(r.open_s for r in runs)
    return best


def pmdb_open_best(core: Path, n: int) -> float:
    """open_target alone, best of n (the figure that must not grow with the core's size)."""
    def once() -> float:
        t0 = time.perf_counter()
        target = open_target(str(core), config=Config())
        elapsed = time.perf_counter() - t0
        target.close()
        return elapsed
    return best_of(n, once)


def gdb_available() -> bool:
    return shutil.which("gdb") is not None


def gdb_once(exe: Path | None, core: Path, timeout: int = 120) -> float:
    """Wall time of ``gdb -batch -ex 'thread apply all bt'`` on the core."""
    cmd = ["gdb", "-q", "-nx", "-batch", "-ex", "set pagination off", "-ex", "thread apply all bt"]
    if exe is not None:
        cmd.append(str(exe))
    cmd += ["-c", str(core)]
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    return time.perf_counter() - t0


@dataclass
class CommandRun:
    seconds: float    # the command alone, the open not counted
    output: str
    threads: int      # threads (tasks) of the target it ran on


def command_on_fresh_target(path: Path, line: str) -> CommandRun:
    """One command line on a freshly opened target, timed without the open."""
    target = open_target(str(path), config=Config())
    threads = len(target.threads())
    out = io.StringIO()
    session = Session(target, stdout=out, stderr=io.StringIO())
    t0 = time.perf_counter()
    session.run_line(line)
    elapsed = time.perf_counter() - t0
    target.close()
    return CommandRun(elapsed, out.getvalue(), threads)


def best_command(path: Path, line: str, runs: int) -> CommandRun:
    """The fastest of ``runs`` fresh-target runs of a command line."""
    return min((command_on_fresh_target(path, line) for _ in range(max(runs, 1))), key=lambda r: r.seconds)
