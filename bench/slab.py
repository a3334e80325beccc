"""Slab forensics: ``::kmastat`` and ``::kmem_verify`` over every cache, next to crash's ``kmem -s``.

Each pmdb run opens a fresh target (not timed) so the slab model and the
dump's page cache start cold, then times one command with its output
formatted into a buffer; best of N. Figures to reach: ::kmastat under 1 s
and faster than crash's kmem -s, ::kmem_verify of every cache under 3 s.
crash runs only with the dump's DWARF vmlinux (see bench/kernel.py); its
time is for ``kmem -s`` alone: a run with it less a run without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.table import table
from bench.timing import best_command
from tests.conftest import FIXTURES

DUMPS = ((FIXTURES / "linux-6.1-x86_64" / "dump.202611221942", "6.1, -c -d31"),
         (FIXTURES / "linux-6.1-x86_64-slub" / "dump.202611222031", "6.1 slub_debug=FZPU, -c -d31"))
HEADERS = ["dump", "caches", "slabs", "::kmastat", "::kmem_verify", "crash kmem -s", "crash/pmdb"]
GOALS = {"::kmastat": 1.0, "::kmem_verify": 3.0}


def crash_kmem_s(path: Path, runs: int) -> tuple[float | None, str]:
    """crash's kmem -s time, or None and why not."""
    from bench.kernel import crash_command_cost

    return crash_command_cost(path, "kmem -s", runs)


def slab_table(runs: int) -> tuple[list[list[str]], list[str]]:
    rows, notes = [], []
    for path, label in DUMPS:
        if not path.exists():
            continue
        kma = best_command(path, "::kmastat", runs)
        ver = best_command(path, "::kmem_verify", runs)
        kma_s, kma_out, ver_s, ver_out = kma.seconds, kma.output, ver.seconds, ver.output
        caches = kma_out.count("\n") - 1
        slabs = sum(int(line.split()[2]) for line in ver_out.splitlines()[1:caches + 1])
        crash_s, why = crash_kmem_s(path, 1)
        if crash_s is None and f"crash: not available: {why}" not in notes:
            notes.append(f"crash: not available: {why}")
        rows.append([label, str(caches), str(slabs), f"{kma_s * 1000:.0f} ms", f"{ver_s * 1000:.0f} ms",
                     f"{crash_s * 1000:.0f} ms" if crash_s is not None else "n/a",
                     f"{crash_s / kma_s:.1f}x" if crash_s is not None else "-"])
        for name, secs in (("::kmastat", kma_s), ("::kmem_verify", ver_s)):
            if secs > GOALS[name]:
                notes.append(f"{label}: {name} took {secs:.2f} s, over its {GOALS[name]:.0f} s goal")
    return rows, notes


def section(runs: int) -> str:
    """The bench's slab section."""
    rows, notes = slab_table(runs)
    if not rows:
        return "Slab forensics: no kernel dumps (../shared/fixtures absent)"
    head = (f"Slab forensics: ::kmastat and ::kmem_verify over every cache, pmdb best of {runs} "
            f"(fresh target each run, open not counted); crash's kmem -s\n\n")
    goals = "goals: ::kmastat < 1 s and faster than crash; ::kmem_verify < 3 s"
    return head + table(HEADERS, rows) + "\n" + "\n".join([goals, *notes])


def main() -> int:
    """``python -m bench.slab``: this section alone."""
    parser = argparse.ArgumentParser(prog="python -m bench.slab", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    print(section(parser.parse_args().runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
