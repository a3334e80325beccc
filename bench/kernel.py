"""Kernel dumps: open + ``::status`` + ``::ps`` + ``::msgbuf``, pmdb next to crash and drgn.

pmdb is timed in this process (open and each command, best of N) and as a
fresh ``python -m pmdb DUMP -e ...`` process (cold start, imports and
output included; best of N wall time, peak RSS from wait4). crash runs only
where it can answer: version 8.0.4 or later (8.0.2 loses the task list on
this kernel) and the DWARF vmlinux of the dump's release. drgn 0.3.0 has no
types without DWARF, so it is timed opening the dump, loading kallsyms from
VMCOREINFO and reading the log ring through the same decoder over drgn's
memory reads; its task list is not possible without types.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.table import table
from pmdb.config import Config
from pmdb.dumps.zst import decompressed
from pmdb.opener import open_target
from pmdb.session import Session
from tests.conftest import FIXTURES

COMMANDS = ("::status", "::ps", "::msgbuf")
KASLR = FIXTURES / "linux-6.1-x86_64"
DUMPS = ((KASLR / "dump.202611221942", "makedumpfile -c -d31 (kdump, zlib)"),
         (KASLR / "vmcore.flat", "makedumpfile -F (flattened)"),
         (KASLR / "vmcore.kdump-zlib", "QEMU kdump-zlib (flattened)"),
         (KASLR / "vmcore.elf.zst", "QEMU ELF, 200 MB (.zst, cached copy)"),
         (FIXTURES / "linux-6.1-x86_64-nokaslr" / "dump.202611221946", "nokaslr, -c -d31"),
         (FIXTURES / "linux-6.1-x86_64-slub" / "dump.202611222031", "slub, -c -d31"))
VMLINUX_DIRS = ("/usr/lib/debug/boot", "/usr/lib/debug/lib/modules/{release}", "/tmp/pmdb-vmcore-oracles")


@dataclass
class InProcess:
    open_s: float
    commands_s: dict[str, float] = field(default_factory=dict)
    lines: int = 0

    @property
    def total_s(self) -> float:
        return self.open_s + sum(self.commands_s.values())


def pmdb_once(path: Path) -> InProcess:
    """Open and run the three commands in this process, output formatted into a buffer."""
    t0 = time.perf_counter()
    target = open_target(str(path), config=Config())
    run = InProcess(time.perf_counter() - t0)
    out = io.StringIO()
    session = Session(target, config=Config(), stdout=out, stderr=io.StringIO())
    for command in COMMANDS:
        t = time.perf_counter()
        session.run_line(command)
        run.commands_s[command] = time.perf_counter() - t
    run.lines = out.getvalue().count("\n")
    target.close()
    return run


def pmdb_best(path: Path, runs: int) -> InProcess:
    """Per-step minimum over the runs: each figure is the least disturbed one."""
    all_runs = [pmdb_once(path) for _ in range(max(runs, 1))]
    best = InProcess(min(r.open_s for r in all_runs), lines=all_runs[0].lines)
    for command in COMMANDS:
        best.commands_s[command] = min(r.commands_s[command] for r in all_runs)
    return best


def child_env() -> dict[str, str]:
    """An installed pmdb runs from compiled bytecode: let children write and reuse it (in a
    prefix outside the tree) even where PYTHONDONTWRITEBYTECODE is set, as in this sandbox."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = "/tmp/pmdb-bench-pycache"
    return env


# A child's ru_maxrss starts from the high-water mark of the process it was forked from (Linux
# keeps it across exec), so a child of this process would report this process's size: the
# measured process is started from a small launcher, which times it and reports its peak RSS.
_LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def timed_process(argv: list[str], timeout: int = 300) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of one fresh process."""
    try:
        out = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *argv], capture_output=True,
                             text=True, env=child_env(), timeout=timeout, check=False).stdout.split()
    except subprocess.TimeoutExpired:
        return float(timeout), 0.0, -1
    if len(out) != 3:
        return 0.0, 0.0, -1
    return float(out[0]), int(out[1]) / 1024, int(out[2])


def best_process(argv: list[str], runs: int) -> tuple[float, float, int]:
    """Best wall time of runs after one warm-up (page cache, bytecode), the largest peak RSS."""
    timed_process(argv)
    results = [timed_process(argv) for _ in range(max(runs, 1))]
    return min(r[0] for r in results), max(r[1] for r in results), max(r[2] for r in results)


def pmdb_argv(path: Path) -> list[str]:
    argv = [sys.executable, "-m", "pmdb", "-q", str(path)]
    for command in COMMANDS:
        argv += ["-e", command]
    return argv


# -- the other debuggers --------------------------------------------------------------------

def crash_setup(release: str) -> tuple[list[str] | None, str]:
    """crash's argv prefix (with the DWARF vmlinux), or None and why it cannot run here."""
    built = sorted(Path.home().glob(".cache/pmdb-oracles/crash-*/crash"))   # as bench/README.md builds it
    crash = os.environ.get("PMDB_CRASH") or (str(built[-1]) if built else None) or shutil.which("crash")
    if crash is None:
        return None, "crash is not installed (or set PMDB_CRASH to a crash binary)"
    out = subprocess.run([crash, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"crash (\d+)\.(\d+)\.(\d+)", out)
    version = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    if version < (8, 0, 4):
        return None, (f"crash {'.'.join(map(str, version))} is older than 8.0.4, which fixed the task "
                      "list for 6.1's struct pid (it finds 3 of 60 tasks)")
    env = os.environ.get("PMDB_VMLINUX")
    candidates = [Path(env)] if env else [Path(d.format(release=release)) / f"vmlinux-{release}"
                                          for d in VMLINUX_DIRS]
    vmlinux = next((c for c in candidates if c.is_file()), None)
    if vmlinux is None:
        return None, (f"no DWARF vmlinux-{release} (linux-image-{release}-dbg, 633 MB; set PMDB_VMLINUX "
                      f"or run ../shared/fixtures/make-linux-vmcore-oracles.sh)")
    return [crash, "-s", str(vmlinux)], ""


def crash_command_cost(path: Path, command: str, runs: int) -> tuple[float | None, str]:
    """Seconds crash spends on one command (a run with it less a run without it: crash's
    8-10 s start-up is paid by both), or None and why crash could not run."""
    prefix, why = crash_setup(_release(path))
    if prefix is None:
        return None, why
    times = []
    for n, commands in enumerate((f"{command}\nexit\n", "exit\n")):
        script = Path(f"/tmp/pmdb-bench-crash-{os.getpid()}-{n}.in")
        script.write_text(commands)
        wall, _, status = best_process([*prefix, "-i", str(script), str(path)], runs)
        if status != 0:
            return None, f"crash exited with status {status} on {path.name}"
        times.append(wall)
    return max(times[0] - times[1], 1e-6), ""


def crash_argv(prefix: list[str], path: Path) -> list[str]:
    """crash runs the same three commands from an input file, then exits."""
    script = Path("/tmp/pmdb-bench-crash.in")
    script.write_text("sys\nps\nlog\nexit\n")
    return [*prefix, "-i", str(script), str(path)]


def drgn_available() -> tuple[bool, str]:
    try:
        import drgn  # noqa: F401
    except ImportError:
        return False, "drgn is not installed (pip install drgn)"
    return True, ""


def drgn_argv(path: Path) -> list[str]:
    return [sys.executable, "-m", "bench.drgn_log", str(path)]


# -- the table --------------------------------------------------------------------------------

def _ok(result: tuple[float, float, int]) -> float | None:
    """The wall time of a run that succeeded; None for a failure (shown as n/a)."""
    return result[0] if result[2] == 0 else None


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds is not None else "n/a"


def _release(path: Path) -> str:
    text = (path.parent / "vmcoreinfo.txt").read_text() if (path.parent / "vmcoreinfo.txt").exists() else ""
    m = re.search(r"^OSRELEASE=(.+)$", text, re.M)
    return m[1] if m else "unknown"


def lab_dumps() -> list[tuple[Path, str]]:
    """The kernel lab's sysrq dump of every pinned kernel it has made (tests/vmlab): the
    amd64 lines, then the arm64 and 686-pae ones (their QEMU ELF dumps)."""
    import tomllib

    from tests.kernel_truth import KERNELS, lab_dump

    with open(Path(__file__).resolve().parent.parent / "tests" / "vmlab" / "kernels.toml", "rb") as f:
        pinned = [k["release"] for k in tomllib.load(f)["kernels"].values()]
    others = {r: "vmcore.elf" for r in pinned if r.endswith(("-arm64", "-686-pae"))}
    out = []
    for release, name in {**KERNELS, **others}.items():
        path = lab_dump(release, "sysrq") / name
        if path.exists():
            out.append((path, f"lab {release} sysrq ({'-c -d31' if name.endswith('mdf') else 'ELF'})"))
    return out


def kernel_rows(runs: int, *, verbose: bool = True) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows, notes) for every kernel fixture present, then every lab kernel."""
    notes: list[str] = []
    use_drgn, why = drgn_available()
    if not use_drgn:
        notes.append(f"drgn: not available: {why}")
    rows = []
    for path, label in [*DUMPS, *lab_dumps()]:
        if not path.exists():
            continue
        crash, crash_why = crash_setup(_release(path))
        if crash is None and f"crash: not available: {crash_why}" not in notes:
            notes.append(f"crash: not available: {crash_why}")
        pmdb_best(path, 1)      # warm: the .zst cache and the BTF cache by BUILD-ID
        p = pmdb_best(path, runs)
        wall, rss, status = best_process(pmdb_argv(path), runs)
        plain = Path(decompressed(str(path))) if path.suffix == ".zst" else path
        d_wall = _ok(best_process(drgn_argv(plain), runs)) if use_drgn else None
        c_wall = _ok(best_process(crash_argv(crash, plain), 0)) if crash is not None else None
        rows.append([label, _ms(p.open_s), *(_ms(p.commands_s[c]) for c in COMMANDS), _ms(p.total_s),
                     _ms(wall) + ("" if status == 0 else " (failed)"), f"{rss:.0f} MB",
                     _ms(d_wall), f"{d_wall / wall:.2f}x" if d_wall else "-",
                     _ms(c_wall), f"{c_wall / wall:.1f}x" if c_wall else "-"])
    headers = ["dump", "open", *COMMANDS, "in-process", "pmdb -e (cold)", "peak RSS",
               "drgn log (cold)", "drgn/pmdb", "crash", "crash/pmdb"]
    return headers, rows, notes


def profile(path: Path, top: int = 18) -> str:
    """Where the in-process time goes: cProfile's cumulative top entries for one run."""
    pmdb_once(path)                  # warm caches so the profile shows the steady state
    prof = cProfile.Profile()
    prof.enable()
    pmdb_once(path)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative")
    stats.print_stats(top)
    return buf.getvalue()


def kernel_table(runs: int) -> str:
    """The printable table and its notes; empty when no kernel fixture is present."""
    headers, rows, notes = kernel_rows(runs)
    if not rows:
        return ""
    figure = max(float(r[6].split()[0]) for r in rows) / 1000
    lines = [table(headers, rows), "",
             f"slowest pmdb -e (cold process, all four steps): {figure * 1000:.0f} ms "
             f"({'within' if figure < 0.6 else 'ABOVE'} the 0.6 s figure)"]
    return "\n".join(lines + notes)
