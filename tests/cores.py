"""Real user cores built at test time, and gdb as the oracle that reads them.

Builders compile tests/data/threads.c (globals, blocked threads, a NULL store in
main) with gcc at -O0/-O2, x86-64 and i386, and take its core two ways: from
the kernel (RLIMIT_CORE raised, core_pattern a plain name written in the cwd)
and from gdb's ``gcore`` at the SIGSEGV. Oracle helpers run gdb on a core and
parse what it says: threads, registers, frames, ``x``, ``print``, ``disassemble``.

Use from a test module::

    from tests.cores import built_cores, gdb_threads   # built_cores is a session fixture
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"
THREADS_C = DATA / "threads.c"
SIGHANDLER_C = DATA / "sighandler.c"
THREADS_N = 4          # threads the default build starts (besides main)
GDB_TIMEOUT = 180


@dataclass(frozen=True)
class BuiltCore:
    """One core of the test program and the executable that made it."""

    name: str          # e.g. "x86_64-O2-kernel"
    exe: Path
    core: Path
    arch: str          # x86_64 or i386
    opt: str           # -O0 / -O2
    how: str           # kernel or gcore
    nthreads: int = THREADS_N + 1


@dataclass
class GdbFrame:
    pc: int
    name: str | None   # function name as gdb knows it (debug info, else ELF symbols)
    kind: str          # normal, inline, tailcall, sigtramp, ...
    cfa: int | None = None    # "frame at" of ``info frame``: the canonical frame address
    start: int | None = None  # entry address of the function (when gdb has debug info for it)


@dataclass
class GdbThread:
    num: int           # gdb's thread number
    lwp: int           # the kernel thread id
    frames: list[GdbFrame] = field(default_factory=list)
    registers: dict[str, int] = field(default_factory=dict)

    def real_frames(self) -> list[GdbFrame]:
        """Frames an unwinder produces: gdb adds inlined frames (sharing their caller's pc)
        and tail-call frames (guessed from DWARF call-site info) that are not on the stack."""
        return [f for f in self.frames if f.kind not in ("inline", "tailcall")]


# -- tools ---------------------------------------------------------------------------

def have_tools(*names: str) -> bool:
    return all(shutil.which(n) for n in names)


def need_tools(*names: str) -> None:
    """Skip the calling test when a tool (gcc, gdb) is missing."""
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def kernel_cores_possible() -> bool:
    """The kernel writes 'core' into the cwd only when core_pattern is a plain name."""
    try:
        pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    except OSError:
        return False
    return bool(pattern) and not pattern.startswith("|") and "/" not in pattern


# -- builders --------------------------------------------------------------------------

def compile_threads(out: Path, *, opt: str = "-O0", m32: bool = False,
                    source: Path = THREADS_C) -> Path:
    """gcc -g OPT -pthread [-m32] SOURCE -o OUT; raises CalledProcessError on failure."""
    cmd = ["gcc", "-g", opt, "-pthread", "-o", str(out), str(source)]
    if m32:
        cmd.insert(1, "-m32")
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


def _unlimited_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def kernel_core(exe: Path, workdir: Path, args: Sequence[str] = (), *, name: str = "") -> Path:
    """Run exe in workdir with RLIMIT_CORE unlimited until it crashes; the kernel's core, renamed."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("core*"):
        stale.unlink()
    proc = subprocess.run([str(exe), *args], cwd=workdir, preexec_fn=_unlimited_core,
                          capture_output=True, timeout=120)
    cores = sorted(workdir.glob("core*"))
    if proc.returncode >= 0 or not cores:
        raise RuntimeError(f"{exe.name} left no kernel core (exit {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace')[-300:]}")
    dest = workdir / (name or f"{exe.name}.core")
    cores[0].rename(dest)
    return dest


def gcore_core(exe: Path, workdir: Path, args: Sequence[str] = (), *, name: str = "") -> Path:
    """Run exe under gdb until its SIGSEGV and write the core with ``gcore``."""
    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / (name or f"{exe.name}.gcore")
    cmd = ["gdb", "-q", "-nx", "-batch", "-ex", "set pagination off", "-ex", "run",
           "-ex", f"gcore {dest}", "-ex", "kill", "--args", str(exe), *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=GDB_TIMEOUT)
    if not dest.exists():
        raise RuntimeError(f"gdb wrote no core for {exe.name}: "
                           f"{proc.stdout.decode(errors='replace')[-300:]}")
    return dest


def build_cores(root: Path, *, variants: Sequence[tuple[str, str, str]] | None = None
                ) -> dict[str, BuiltCore]:
    """The standard set of cores: (arch, opt, how) for x86-64 -O0/-O2 kernel+gcore, i386 -O2.

    Kernel variants are left out when the kernel cannot write cores into the cwd.
    """
    if variants is None:
        variants = [("x86_64", "-O0", "kernel"), ("x86_64", "-O2", "kernel"),
                    ("x86_64", "-O0", "gcore"), ("x86_64", "-O2", "gcore"),
                    ("i386", "-O2", "kernel"), ("i386", "-O0", "gcore")]
    out: dict[str, BuiltCore] = {}
    exes: dict[tuple[str, str], Path] = {}
    for arch, opt, how in variants:
        if how == "kernel" and not kernel_cores_possible():
            continue
        key = (arch, opt)
        if key not in exes:
            exes[key] = compile_threads(root / f"threads-{arch}{opt}", opt=opt, m32=arch == "i386")
        name = f"{arch}{opt}-{how}"
        make = kernel_core if how == "kernel" else gcore_core
        core = make(exes[key], root / name, name=f"{name}.core")
        out[name] = BuiltCore(name, exes[key], core, arch, opt, how)
    return out


def build_signal_core(root: Path, *, m32: bool = False) -> BuiltCore:
    """tests/data/sighandler.c at -O2, crashed inside a SIGUSR1 handler; a kernel core
    when possible, else a gcore."""
    arch = "i386" if m32 else "x86_64"
    exe = compile_threads(root / f"sighandler-{arch}", opt="-O2", m32=m32, source=SIGHANDLER_C)
    how = "kernel" if kernel_cores_possible() else "gcore"
    make = kernel_core if how == "kernel" else gcore_core
    name = f"sighandler-{arch}-{how}"
    return BuiltCore(name, exe, make(exe, root / name, name=f"{name}.core"), arch, "-O2", how, 1)


@pytest.fixture(scope="session")
def built_cores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltCore]:
    """Every standard core of tests/data/threads.c, built once per test session."""
    need_tools("gcc", "gdb")
    return build_cores(tmp_path_factory.mktemp("cores"))


@pytest.fixture(scope="session")
def built_core_list(built_cores: dict[str, BuiltCore]) -> list[BuiltCore]:
    return list(built_cores.values())


# -- the gdb oracle ---------------------------------------------------------------------

def gdb_batch(exe: Path | str | None, core: Path | str, commands: Sequence[str], *,
              timeout: int = GDB_TIMEOUT) -> str:
    """gdb's stdout for commands run in batch mode on a core (with its executable if given)."""
    cmd = ["gdb", "-q", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set width 0",
           "-ex", "set confirm off"]
    for c in commands:
        cmd += ["-ex", c]
    if exe is not None:
        cmd += [str(exe)]
    cmd += ["-c", str(core)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc.stdout


_ORACLE_PY = r'''
import gdb, json, re
gdb.execute("set backtrace past-main on")
gdb.execute("set backtrace past-entry on")
kinds = {gdb.NORMAL_FRAME: "normal", gdb.INLINE_FRAME: "inline", gdb.SIGTRAMP_FRAME: "sigtramp",
         gdb.DUMMY_FRAME: "dummy", gdb.TAILCALL_FRAME: "tailcall", gdb.ARCH_FRAME: "arch"}
out = []
for inf in gdb.inferiors():
    for th in sorted(inf.threads(), key=lambda t: t.num):
        th.switch()
        frame = gdb.newest_frame()
        regs = {}
        for r in frame.architecture().registers("general"):
            try:
                regs[r.name] = int(frame.read_register(r)) & ((1 << 64) - 1)
            except (gdb.error, ValueError):
                pass
        frames = []
        while frame is not None and len(frames) < 200:
            frame.select()
            info = gdb.execute("info frame", to_string=True)
            m = re.search(r"frame at (0x[0-9a-f]+)", info)
            func = frame.function()
            start = None
            if func is not None:
                try:
                    start = int(func.value().address)
                except (gdb.error, TypeError, ValueError):
                    start = None
            frames.append({"pc": frame.pc(), "name": frame.name(),
                           "kind": kinds.get(frame.type(), "other"),
                           "cfa": int(m.group(1), 16) if m else None, "start": start})
            try:
                frame = frame.older()
            except gdb.error:
                break
        out.append({"num": th.num, "lwp": th.ptid[1], "frames": frames, "registers": regs})
print("PMDB-ORACLE:" + json.dumps(out))
'''


def gdb_threads(exe: Path | str | None, core: Path | str) -> list[GdbThread]:
    """Every thread gdb sees in a core: lwp, frame-0 general registers, and all frames
    (past main and past the entry point, so they line up with a full unwind)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(_ORACLE_PY)
        script = f.name
    try:
        text = gdb_batch(exe, core, [f"source {script}"])
    finally:
        os.unlink(script)
    for line in text.splitlines():
        if line.startswith("PMDB-ORACLE:"):
            data = json.loads(line[len("PMDB-ORACLE:"):])
            return [GdbThread(t["num"], t["lwp"], [GdbFrame(**fr) for fr in t["frames"]],
                              t["registers"]) for t in data]
    raise RuntimeError(f"gdb gave no oracle output for {core}:\n{text[-500:]}")


_BT_LINE = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\S+) \(")


def gdb_bt(exe: Path | str | None, core: Path | str, *, past_main: bool = False) -> list[tuple[int | None, str]]:
    """The current thread's ``bt`` as (pc or None, function name) per printed frame."""
    cmds = ["set backtrace past-main on"] if past_main else []
    # gdb shows frame 0 when it loads the core; only what follows the marker is the bt
    text = gdb_batch(exe, core, [*cmds, "echo PMDB-BT\\n", "bt"])
    rows = []
    for line in text.split("PMDB-BT\n", 1)[-1].splitlines():
        m = _BT_LINE.match(line)
        if m:
            rows.append((int(m.group(2), 16) if m.group(2) else None, m.group(3)))
    return rows


def gdb_x(exe: Path | str | None, core: Path | str, expr: str, count: int = 4,
          unit: str = "g") -> list[int]:
    """``x/<count><unit>x expr`` as integers."""
    text = gdb_batch(exe, core, [f"x/{count}{unit}x {expr}"])
    values = []
    for line in text.splitlines():
        if ":" in line:
            values += [int(v, 16) for v in line.split(":", 1)[1].split()]
    return values[:count]


def gdb_print(exe: Path | str | None, core: Path | str, expr: str) -> str:
    """What ``print expr`` shows after the ``$N = `` prefix."""
    text = gdb_batch(exe, core, [f"print {expr}"])
    for line in text.splitlines():
        m = re.match(r"^\$\d+ = (.*)$", line)
        if m:
            return m.group(1)
    raise RuntimeError(f"gdb could not print {expr}: {text[-300:]}")


def gdb_disassemble(exe: Path | str | None, core: Path | str, func: str) -> list[tuple[int, str]]:
    """``disassemble func`` as (address, instruction text) pairs."""
    text = gdb_batch(exe, core, ["set disassembly-flavor att", f"disassemble {func}"])
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:=>)?\s*(0x[0-9a-f]+) <[^>]*>:\s*(.*)$", line)
        if m:
            rows.append((int(m.group(1), 16), m.group(2).strip()))
    return rows


def iter_threads_frames(threads: Sequence[GdbThread]) -> Iterator[tuple[int, list[int]]]:
    """(lwp, pcs of the real frames) per thread: the shape an unwinder's answer is compared in."""
    for t in threads:
        yield t.lwp, [f.pc for f in t.real_frames()]


# -- cores of other programs (issue 15: what gdb and pmdb must agree on) -------------------

NORETURN_C = DATA / "noreturn.c"


def compile_noreturn(out: Path, *, m32: bool = False, strip: bool = False) -> Path:
    """tests/data/noreturn.c at -O2 -fomit-frame-pointer (optionally stripped)."""
    cmd = ["gcc", "-g", "-O2", "-fomit-frame-pointer", "-pthread", "-o", str(out), str(NORETURN_C)]
    if m32:
        cmd.insert(1, "-m32")
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    if strip:
        subprocess.run(["strip", str(out)], check=True, capture_output=True, timeout=60)
    return out


def killed_core(exe: Path, workdir: Path, signo: int, args: Sequence[str] = (), *,
                name: str = "") -> Path:
    """Run exe until it prints "ready", send it signo with kill(2) from this process, and
    return the kernel's core (the siginfo names this process as the sender). The process's
    /proc/PID/maps just before the kill is kept beside the core as ``maps``."""
    import signal as _signal
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("core*"):
        stale.unlink()
    proc = subprocess.Popen([str(exe), *args], cwd=workdir, preexec_fn=_unlimited_core,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{exe.name} did not get ready")
        (workdir / "maps").write_text(Path(f"/proc/{proc.pid}/maps").read_text())
        os.kill(proc.pid, signo)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cores = sorted(workdir.glob("core*"))
    if not cores:
        raise RuntimeError(f"{exe.name} left no core after {_signal.Signals(signo).name}")
    dest = workdir / (name or f"{exe.name}.core")
    cores[0].rename(dest)
    return dest


def gcore_running(argv: Sequence[str], workdir: Path) -> tuple[Path, int]:
    """A gcore snapshot of a running program (gdb attaches, writes the core, detaches): a
    core of a process that no signal killed. Returns (core, pid)."""
    import time
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(list(argv), cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        prefix = workdir / "snap"
        subprocess.run(["gcore", "-o", str(prefix), str(proc.pid)], capture_output=True,
                       timeout=GDB_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    core = workdir / f"snap.{proc.pid}"
    if not core.exists():
        raise RuntimeError(f"gcore wrote no core of {argv[0]}")
    return core, proc.pid


# -- frames named by minimal symbols (issue 16: debug files; issue 15: real programs) ------

# per thread: the real frames (inlined and tail-call frames are not on the stack) and the
# name gdb gives each: its DWARF function's when it has one, else its minimal symbol's
_GDB_FRAMES = r'''
import gdb, json
out = []
for th in sorted(gdb.selected_inferior().threads(), key=lambda t: t.num):
    th.switch()
    frame, frames = gdb.newest_frame(), []
    while frame is not None and len(frames) < 100:
        if frame.type() not in (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME):
            frames.append([frame.pc(), frame.name()])
        try:
            frame = frame.older()
        except gdb.error:
            break
    out.append({"lwp": th.ptid[1], "frames": frames})
print("PMDB-FRAMES:" + json.dumps(out))
'''


def gdb_frame_names(exe: Path, core: Path, *, debug_dir: str | None = None
                    ) -> dict[int, list[tuple[int, str | None]]]:
    """lwp -> [(pc, name)] of each real frame, as gdb unwinds and names them (``bt`` without
    the inlined frames); debug_dir replaces gdb's debug-file-directory (a missing one: no
    separate debug files)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(_GDB_FRAMES)
        script = f.name
    cmd = ["gdb", "-q", "-nx", "-batch"]
    if debug_dir is not None:
        cmd += ["-iex", f"set debug-file-directory {debug_dir}"]
    cmd += ["-ex", "set backtrace past-main on", "-ex", "set backtrace past-entry on",
            "-ex", f"source {script}", str(exe), "-c", str(core)]
    try:
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=GDB_TIMEOUT).stdout
    finally:
        os.unlink(script)
    for line in text.splitlines():
        if line.startswith("PMDB-FRAMES:"):
            return {t["lwp"]: [(pc, name) for pc, name in t["frames"]]
                    for t in json.loads(line[len("PMDB-FRAMES:"):])}
    raise RuntimeError(f"gdb gave no frames for {core}:\n{text[-500:]}")


def pmdb_frames(target: Any) -> dict[int, list[tuple[int, str | None]]]:
    """lwp -> [(pc, symbol name)] of every frame pmdb unwinds, named as its stacks name them."""
    out = {}
    for thread in target.threads():
        rows = []
        for frame in target.stack(thread):
            hit = target.symbols.resolve(frame.pc - 1 if frame.call_site else frame.pc)
            rows.append((frame.pc, hit[0].name if hit else None))
        out[thread.id] = rows
    return out




def same_frames(ours: dict[int, list[tuple[int, str | None]]],
                theirs: dict[int, list[tuple[int, str | None]]]) -> None:
    """Assert pmdb's frames are gdb's, thread by thread: the same pcs and names, except that
    a function's separate part is foo.cold in pmdb (foo+off would name another address) where
    gdb's bt says foo."""
    assert sorted(ours) == sorted(theirs)
    for lwp, frames in theirs.items():
        assert [pc for pc, _ in ours[lwp]] == [pc for pc, _ in frames], f"thread {lwp}"
        mine = [(pc, n.removesuffix(".cold") if n and n != want else n)
                for (pc, n), (_, want) in zip(ours[lwp], frames, strict=True)]
        assert mine == frames, f"thread {lwp}"
