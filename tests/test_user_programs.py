"""Cores of real programs, bash and python3 with threads, against gdb (issue 15).

Made here: bash killed by its own ``kill -SEGV $$`` (the kernel's core), and python3 with
three threads blocked in different ways, killed with SIGSEGV from this process and
snapshotted running by gcore. gdb on the same core (with libc6-dbg's symbols when they are
installed, as pmdb finds them) is the oracle: the thread count, each thread's frames and the
name each has where gdb has one, and the signal's sender.
"""

from __future__ import annotations

import io
import re
import shutil
import signal
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target
from tests.conftest import need_tools
from tests.cores import (
    gcore_running,
    gdb_batch,
    gdb_frame_names,
    kernel_core,
    kernel_cores_possible,
    killed_core,
    pmdb_frames,
    same_frames,
)

PY_THREADS = """
import sys, threading, time
started = threading.Barrier(4)
event, lock = threading.Event(), threading.Lock()
lock.acquire()
def sleeper():
    started.wait(); time.sleep(1000)
def waiter():
    started.wait(); event.wait()
def locker():
    started.wait(); lock.acquire()
for target in (sleeper, waiter, locker):
    threading.Thread(target=target, daemon=True).start()
started.wait()
time.sleep(0.2)
print("ready", flush=True)
time.sleep(1000)
"""


def _program(name: str) -> Path:
    """Debian's own binary (a PATH may lead to a pyenv shim, a shell script)."""
    found = shutil.which(name, path="/usr/bin:/bin")
    if found is None or not shutil.which("gdb"):
        need_tools(f"needs {name} and gdb")
    assert found is not None
    return Path(found).resolve()


def _need_kernel_cores() -> None:
    if not kernel_cores_possible():
        pytest.skip("the kernel cannot write cores into the cwd here (core_pattern)")


@pytest.fixture(scope="module")
def cores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (executable, core)."""
    root = tmp_path_factory.mktemp("programs")
    bash, python = _program("bash"), _program("python3")
    out = {}
    if kernel_cores_possible():
        out["bash"] = (bash, kernel_core(bash, root / "bash", ["-c", "kill -SEGV $$"]))
        out["python"] = (python, killed_core(python, root / "python", signal.SIGSEGV, ["-c", PY_THREADS]))
    core, _ = gcore_running([str(python), "-c", PY_THREADS], root / "python-gcore")
    out["python-gcore"] = (python, core)
    return out


def _open(core: Path) -> Target:
    return open_target(str(core), config=Config())


def _status(target: Target) -> dict[str, str]:
    out = io.StringIO()
    Session(target, stdout=out, stderr=io.StringIO()).run_line("::status")
    return dict(re.match(r"^([^:]+):\s+(.*)$", x).groups() for x in out.getvalue().splitlines())  # type: ignore[union-attr]


def _gdb_int(exe: Path, core: Path, expr: str) -> int:
    text = gdb_batch(exe, core, [f"print/d {expr}"])
    return int(re.findall(r"^\$\d+ = (-?\d+)$", text, re.M)[-1])


@pytest.mark.parametrize("name", ["bash", "python", "python-gcore"])
def test_threads_and_frames_equal_gdbs(cores: dict[str, tuple[Path, Path]], name: str) -> None:
    """Every thread gdb sees, each with gdb's frames (pcs) and, frame by frame, the name
    gdb's symbols give it (None where gdb has none either)."""
    if name not in cores:
        _need_kernel_cores()
    exe, core = cores[name]
    target = _open(core)
    ours, theirs = pmdb_frames(target), gdb_frame_names(exe, core)
    assert len(ours) == len(theirs) == (1 if name == "bash" else 4)
    same_frames(ours, theirs)
    named = [n for frames in ours.values() for _, n in frames if n]
    if name == "bash":
        assert "main" in named
    else:
        # each thread runs Python code; the three started ones from libc's start_thread
        # when libc6-dbg's symbols are there (its .dynsym does not have it)
        assert all(any(n == "_PyEval_EvalFrameDefault" for _, n in f) for f in ours.values())
        assert named.count("start_thread") in (0, 3)


def test_bash_killed_by_itself_names_the_sender(cores: dict[str, tuple[Path, Path]]) -> None:
    """kill -SEGV $$: the siginfo's sender is bash itself (si_pid, si_uid as gdb's
    $_siginfo._sifields._kill shows them), not a fault address."""
    _need_kernel_cores()
    exe, core = cores["bash"]
    status = _status(_open(core))
    pid = _gdb_int(exe, core, "$_siginfo._sifields._kill.si_pid")
    uid = _gdb_int(exe, core, "$_siginfo._sifields._kill.si_uid")
    assert status["signal"] == f"SIGSEGV (11), code SI_USER ({_gdb_int(exe, core, '$_siginfo.si_code')})"
    assert status["sent by"] == f"pid {pid}, uid {uid}" and status["pid"] == str(pid)
    assert "fault address" not in status


def test_python_killed_from_outside_and_snapshotted(cores: dict[str, tuple[Path, Path]]) -> None:
    """SIGSEGV from this process names this process; gcore's snapshot was killed by nothing
    (gdb prints no "terminated with signal" for it)."""
    _need_kernel_cores()
    exe, core = cores["python"]
    status = _status(_open(core))
    assert status["sent by"] == f"pid {_gdb_int(exe, core, '$_siginfo._sifields._kill.si_pid')}, uid " \
        f"{_gdb_int(exe, core, '$_siginfo._sifields._kill.si_uid')}"
    assert status["threads"] == "4"
    # one row: the script's newlines escaped (psargs keeps the first 80 bytes)
    assert status["arguments"] == f"{exe} -c \\nimport sys, threading, time\\nstarted = threading.Barrier"
    exe, snap = cores["python-gcore"]
    assert "terminated with signal" not in gdb_batch(exe, snap, ["info threads"])
    assert _status(_open(snap))["signal"].startswith("none")
