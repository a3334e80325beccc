"""The cores the benchmark reads: the shared fixtures and a few built here.

Built cores come from tests/data/threads.c (the test suite's program): one with
many threads for unwinding work, and a sparse ~1 GB one (1 GB malloc'd, one page
per MB touched) to show that opening does not read the whole file. They live in
a temporary directory that the caller removes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import USER_CORES
from tests.cores import compile_threads, kernel_core, kernel_cores_possible


@dataclass(frozen=True)
class BenchCore:
    label: str
    core: Path
    exe: Path | None        # for gdb; None: gdb cannot read this core's registers
    gdb: bool = True


def fixture_cores() -> list[BenchCore]:
    """The x86-64/i386 fixtures (gdb reads them) and a SPARC one (pmdb only)."""
    out = []
    for core, exe, gdb in (("hashcrash-x86_64-O2.core", "hashcrash-x86_64-O2", True),
                           ("hashcrash-x86_64-O2.gdb.core", "hashcrash-x86_64-O2", True),
                           ("hashcrash-i386-O2.core", "hashcrash-i386-O2", True),
                           ("hashcrash-sparc64-O2.core", "hashcrash-sparc64-O2", False)):
        if (USER_CORES / core).exists():
            out.append(BenchCore(core, USER_CORES / core, USER_CORES / exe, gdb))
    return out


def built_cores(workdir: Path, *, threads: int = 64, big_mb: int = 1024) -> tuple[list[BenchCore], str]:
    """A many-thread core and a sparse big core, or ([], why) when they cannot be made."""
    if not kernel_cores_possible():
        return [], "kernel core_pattern is not a plain file name: built cores skipped"
    try:
        exe = compile_threads(workdir / "threads", opt="-O2")
        many = kernel_core(exe, workdir / "many", [str(threads)], name="threads-many.core")
        big = kernel_core(exe, workdir / "big", ["1", str(big_mb)], name="threads-1g.core")
    except (OSError, RuntimeError) as err:
        return [], f"built cores skipped: {err}"
    except Exception as err:  # a failed compile (CalledProcessError) must not stop the bench
        return [], f"built cores skipped: {type(err).__name__}: {err}"
    return [BenchCore(f"threads.c, {threads} threads", many, exe),
            BenchCore(f"threads.c, {big_mb} MB heap (sparse)", big, exe)], ""


def sizes(path: Path) -> tuple[int, int]:
    """(apparent size, bytes on disk) of a file."""
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512
