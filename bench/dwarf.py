"""Kernel DWARF: a dump opened with its debug vmlinux, cold (no index yet) and warm (cached).

For each dump with its -dbg vmlinux (the 6.1 fixture with vmlinux-6.1.0-56-amd64, the lab's
686-pae sysrq dumps with theirs), as fresh ``python -m pmdb -q DUMP [VMLINUX] -e CMD``
processes (bench/kernel.py's launcher: wall time and peak RSS):

- *cold*: an empty cache directory each time, best of N: the first open with the vmlinux
  (kallsyms and BTF decoded, the .debug_info units the command needs indexed, all written);
- *warm*: the same cache again (the index is loaded), best of N;
- *no vmlinux*: the same command from the dump alone, for the difference (on 686-pae, which has
  no BTF, ``::ps`` then fails: the row times what the dump alone can do, ``::status``).

And in-process (the open and the command timed apart, best of N): the open with the vmlinux
named and the cached index, and the first ``::print jiffies`` (amd64: DWARF after BTF) or
``::ps`` (686-pae: DWARF alone) on that target. The scan alone (dwarf_index.build_index) is
timed once per vmlinux. drgn 0.3.0 (``pip install drgn``), when installed, reads the same
jiffies from the amd64 dump and vmlinux as a fresh process (it indexes the DWARF each time,
in C, on every core): its wall time and peak RSS are the last columns.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.kernel import drgn_available, timed_process
from bench.table import table
from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf_index import build_index
from tests.conftest import FIXTURES
from tests.kernel_truth import LAB_CACHE

HEADERS = ["dump + vmlinux", "command", "scan alone", "cold", "warm", "no vmlinux", "open (warm)",
           "command (warm)", "peak RSS cold", "peak RSS warm", "drgn", "drgn RSS"]
# drgn's jiffies, as a child process: open the dump, load the vmlinux's DWARF, read the variable
_DRGN = """
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]], default=False, main=False)
print(hex(prog["jiffies"].value_()))
"""


def cases() -> list[tuple[str, Path, Path, str]]:
    """(label, dump, vmlinux, command) for every pair on this machine."""
    out = []
    fixture = FIXTURES / "linux-6.1-x86_64" / "dump.202611221942"
    for vmlinux in (Path("/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64"),
                    LAB_CACHE / "kernels" / "6.1.0-56-amd64" / "dbg" / "vmlinux-6.1.0-56-amd64"):
        if fixture.exists() and vmlinux.exists():
            out.append(("6.1 fixture (amd64, BTF + DWARF)", fixture, vmlinux, "::print jiffies"))
            break
    for release in ("6.1.0-57-686-pae", "5.10.0-32-686-pae"):
        dump = LAB_CACHE / "dumps" / release / "sysrq" / "vmcore.elf"
        vmlinux = LAB_CACHE / "kernels" / release / "dbg" / f"vmlinux-{release}"
        if dump.exists() and vmlinux.exists():
            out.append((f"lab {release} (DWARF alone)", dump, vmlinux, "::ps"))
    return out


@contextmanager
def _cache_dir(path: Path) -> Iterator[None]:
    """Children (they copy os.environ) use this cache directory."""
    old = os.environ.get("PMDB_CACHE_DIR")
    os.environ["PMDB_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PMDB_CACHE_DIR", None)
        else:
            os.environ["PMDB_CACHE_DIR"] = old


def _in_process(dump: Path, vmlinux: Path, command: str, runs: int) -> tuple[float, float]:
    """(open, first command) in-process with the cached index, best of runs each."""
    opens, commands = [], []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        target = open_target(str(dump), config=Config({"debuginfo.directories": []}), symbol_files=[str(vmlinux)])
        t1 = time.perf_counter()
        Session(target, stdout=io.StringIO(), stderr=io.StringIO()).run_line(command)
        t2 = time.perf_counter()
        target.close()
        opens.append(t1 - t0)
        commands.append(t2 - t1)
    return min(opens), min(commands)


def _drgn(dump: Path, vmlinux: Path, runs: int) -> tuple[float, float] | None:
    """(best wall time, peak RSS) of drgn reading jiffies; None without drgn."""
    if not drgn_available()[0]:
        return None
    argv = [sys.executable, "-c", _DRGN, str(dump), str(vmlinux)]
    results = [timed_process(argv) for _ in range(max(runs, 1))]
    if any(r[2] != 0 for r in results):
        return None
    return min(r[0] for r in results), max(r[1] for r in results)


def _scan(vmlinux: Path) -> float:
    debug = DebugFile(str(vmlinux))
    t0 = time.perf_counter()
    build_index(debug)
    elapsed = time.perf_counter() - t0
    debug.close()
    return elapsed


# drgn's stack of the panic task with each frame's source line, as a child process
_DRGN_LINES = """
import sys, drgn
from drgn.helpers.linux.pid import find_task
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]], default=False, main=False)
for frame in prog.stack_trace(find_task(prog, 102)):
    try:
        print(frame.name, *frame.source())
    except LookupError:
        print(frame.name)
"""
LINE_HEADERS = ["dump + vmlinux", "command", "cold", "warm", "bt (no vmlinux)", "bt -l in-process cold",
                "bt -l in-process warm", "of it, lines cold", "lines warm", "units decoded", "peak RSS cold",
                "peak RSS warm", "drgn", "drgn RSS"]


def _bt_lines_in_process(dump: Path, vmlinux: Path, cache: Path) -> tuple[float, float, int, float, float]:
    """(first bt -l with an empty cache, the same on a new target with the units cached,
    units the first decoded, and the source-line lookups alone of each), the open not counted."""
    from pmdb.os.linux.debuginfo import debuginfo_for

    times, looks, decoded = [], [], 0
    for _ in range(2):
        target = open_target(str(dump), config=Config({"debuginfo.directories": []}), symbol_files=[str(vmlinux)])
        session = Session(target, stdout=io.StringIO(), stderr=io.StringIO(),
                          config=Config({"cache.directory": str(cache), "debuginfo.directories": []}))
        info = debuginfo_for(target.os)
        spent = [0.0]
        real = info.line_at

        def timed(addr: int, real=real, spent=spent) -> tuple[str, int] | None:   # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return real(addr)
            finally:
                spent[0] += time.perf_counter() - t

        info.line_at = timed                                  # type: ignore[method-assign]
        t0 = time.perf_counter()
        session.run_line("bt -l")
        times.append(time.perf_counter() - t0)
        looks.append(spent[0])
        lines = info.vmlinux_lines()
        decoded = decoded or (lines.decoded if lines is not None else 0)
        target.close()
    return times[0], times[1], decoded, looks[0], looks[1]


def lines_section(runs: int) -> str:
    """bt -l (source lines from .debug_line) on the amd64 fixture: fresh processes cold (no
    line table cached) and warm, in-process, and drgn's stack trace with its source lines."""
    found = [c for c in cases() if "amd64" in c[0]]
    if not found:
        return "Source lines: no 6.1 fixture dump with its debug vmlinux here"
    label, dump, vmlinux, _ = found[0]
    work = Path(tempfile.mkdtemp(prefix="pmdb-bench-lines-", dir="/tmp"))
    config = work / "pmdb.toml"
    config.write_text("[debuginfo]\ndirectories = []\n")
    try:
        base = [sys.executable, "-m", "pmdb", "-q", "--config", str(config), str(dump)]
        with _cache_dir(work / "cache"):
            cold = timed_process([*base, str(vmlinux), "-e", "bt -l"])
            warm = [timed_process([*base, str(vmlinux), "-e", "bt -l"]) for _ in range(max(runs, 1))]
            alone = min(timed_process([*base, "-e", "bt"])[0] for _ in range(max(runs, 1)))
        with _cache_dir(work / "inproc"):
            first, again, decoded, look_cold, look_warm = _bt_lines_in_process(dump, vmlinux, work / "inproc")
        drgn = None
        if drgn_available()[0]:
            results = [timed_process([sys.executable, "-c", _DRGN_LINES, str(dump), str(vmlinux)])
                       for _ in range(max(runs, 1))]
            if all(r[2] == 0 for r in results):
                drgn = (min(r[0] for r in results), max(r[1] for r in results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row = [label, "bt -l", f"{cold[0] * 1000:.0f} ms", f"{min(w[0] for w in warm) * 1000:.0f} ms",
           f"{alone * 1000:.0f} ms", f"{first * 1000:.0f} ms", f"{again * 1000:.0f} ms",
           f"{look_cold * 1000:.0f} ms", f"{look_warm * 1000:.0f} ms", str(decoded),
           f"{cold[1]:.0f} MB", f"{max(w[1] for w in warm):.0f} MB",
           f"{drgn[0] * 1000:.0f} ms" if drgn else "-", f"{drgn[1]:.0f} MB" if drgn else "-"]
    head = (f"Source lines: fresh `pmdb -q DUMP VMLINUX -e 'bt -l'` processes, cold (no line table "
            f"cached) and warm (best of {runs}); in-process bt -l after the open, cold and warm; drgn's "
            f"stack trace of the same task with frame.source()\n\n")
    return head + table(LINE_HEADERS, [row])


def section(runs: int) -> str:
    found = cases()
    if not found:
        return ("Kernel DWARF: no dump with its debug vmlinux here "
                "(python -m tests.vmlab dbg 6.1-fixture,all-i386)")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="pmdb-bench-dwarf-", dir="/tmp"))
    config = work / "pmdb.toml"
    config.write_text("[debuginfo]\ndirectories = []\n")
    try:
        for label, dump, vmlinux, command in found:
            base = [sys.executable, "-m", "pmdb", "-q", "--config", str(config), str(dump)]
            colds = []
            for attempt in range(max(runs, 1)):
                with _cache_dir(work / f"cold-{label.split()[1]}-{attempt}"):
                    colds.append(timed_process([*base, str(vmlinux), "-e", command]))
            cold = min(colds)
            with _cache_dir(work / label.split()[1]):
                timed_process([*base, str(vmlinux), "-e", command])
                warm = [timed_process([*base, str(vmlinux), "-e", command]) for _ in range(max(runs, 1))]
                alone_cmd = command if "amd64" in label else "::status"
                alone = min(timed_process([*base, "-e", alone_cmd])[0] for _ in range(max(runs, 1)))
                opened, ran = _in_process(dump, vmlinux, command, runs)
            drgn = _drgn(dump, vmlinux, runs) if "amd64" in label else None
            rows.append([label, command, f"{_scan(vmlinux):.1f} s", f"{cold[0] * 1000:.0f} ms",
                         f"{min(w[0] for w in warm) * 1000:.0f} ms",
                         f"{alone * 1000:.0f} ms ({alone_cmd})", f"{opened * 1000:.0f} ms",
                         f"{ran * 1000:.0f} ms", f"{cold[1]:.0f} MB", f"{max(w[1] for w in warm):.0f} MB",
                         f"{drgn[0] * 1000:.0f} ms" if drgn else "-", f"{drgn[1]:.0f} MB" if drgn else "-"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = (f"Kernel DWARF: fresh `pmdb -q DUMP VMLINUX -e CMD` processes, cold (an empty cache each time, best "
            f"of {runs}) and warm (cached index, best of {runs}); in-process open and command with the cached index\n\n")
    return head + table(HEADERS, rows)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(section(n))
    print()
    print(lines_section(n))
