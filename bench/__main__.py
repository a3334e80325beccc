"""``python -m bench``: pmdb against gdb on the same cores, open time against core size,
emulation speed (bench/emulate_x86.py), and fleet triage throughput (bench/triage.py)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.cores import BenchCore, built_cores, fixture_cores, sizes
from bench.table import table
from bench.timing import gdb_available, gdb_once, pmdb_best, pmdb_open_best


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def stack_table(cores: list[BenchCore], runs: int, gdb_runs: int) -> str:
    rows = []
    use_gdb = gdb_available()
    for c in cores:
        p = pmdb_best(c.core, runs)
        g = min(gdb_once(c.exe, c.core) for _ in range(gdb_runs)) if use_gdb and c.gdb else None
        rows.append([c.label, _size(sizes(c.core)[0]), str(p.threads), str(p.frames),
                     f"{p.open_s * 1000:.0f} ms", f"{p.total_s * 1000:.0f} ms",
                     f"{g * 1000:.0f} ms" if g is not None else "n/a",
                     f"{g / p.total_s:.1f}x" if g is not None else "-"])
    return table(["core", "size", "threads", "frames", "pmdb open", "pmdb open+$c",
                   "gdb bt (all threads)", "gdb/pmdb"], rows)


def open_table(small: BenchCore, big: BenchCore, runs: int) -> str:
    rows, times = [], []
    for c in (small, big):
        t = pmdb_open_best(c.core, runs)
        times.append(t)
        apparent, disk = sizes(c.core)
        rows.append([c.label, _size(apparent), _size(disk), f"{t * 1000:.1f} ms"])
    text = table(["core", "file size", "on disk", "pmdb open"], rows)
    return f"{text}\nbig/small open time: {times[1] / times[0]:.2f} (size ratio {sizes(big.core)[0] / sizes(small.core)[0]:.0f})"


def emulate_section(runs: int) -> str:
    """Instructions per second of ::emulate's engines (bench/emulate_x86.py)."""
    from bench import emulate_x86

    if not emulate_x86.USER_CORES.is_dir():
        return "\n(emulation speed: no user-core fixtures)"
    cells, notes = emulate_x86.table(runs)
    head = f"\nEmulation speed (best of {runs}, warm: code translated/decoded once)\n\n"
    return head + table(emulate_x86.HEADERS, cells) + "\n" + "\n".join(notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--runs", type=int, default=5, help="pmdb runs per core (best is shown)")
    ap.add_argument("--gdb-runs", type=int, default=3, help="gdb runs per core (best is shown)")
    ap.add_argument("--threads", type=int, default=64, help="threads in the built many-thread core")
    ap.add_argument("--big-mb", type=int, default=1024, help="heap of the sparse big core, in MB")
    ap.add_argument("--only", choices=("user", "kernel", "dwarf", "triage", "scale", "versus"),
                    help="only the user cores, the kernel dumps, the kernel dumps with DWARF, fleet "
                         "triage on Dask, the lab's 4 GB busy dump against crash and drgn "
                         "(bench/scale.py; not in a full run), or pmdb against drgn and crash on "
                         "three jobs (bench/versus.py)")
    ap.add_argument("--scale-runs", type=int, default=1, help="pmdb runs per command at scale (best is shown)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the versus table")
    ap.add_argument("--profile", action="store_true", help="also profile pmdb on the first kernel dump")
    args = ap.parse_args(argv)
    if args.only == "kernel":
        return kernel_section(args)
    if args.only == "versus":
        from bench import versus  # pmdb vs drgn vs crash: J1-J3 as fresh processes
        print(versus.section(args.rounds))
        return 0
    if args.only == "triage":
        from bench import triage  # pmdb triage: dumps per minute on 1 and 2 Dask workers
        print(triage.section(args.runs))
        return 0
    if args.only == "scale":
        from bench import scale  # the lab's busy dump: 10,264 tasks, 2.1M slab objects
        print(scale.section(args.scale_runs))
        return 0
    if args.only == "dwarf":
        from bench import dwarf  # the kernel's debug vmlinux: index cold and warm
        print(dwarf.section(args.runs))
        print("\n" + dwarf.lines_section(args.runs))
        return 0
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="pmdb-bench-", dir="/tmp"))
    try:
        cores = fixture_cores()
        built, why = built_cores(workdir, threads=args.threads, big_mb=args.big_mb)
        if why:
            print(f"note: {why}")
        cores += built
        if not cores:
            print("no cores to measure (../shared/fixtures absent and none could be built)")
            return 1
        print(f"Open a core and print every thread's stack: pmdb best of {args.runs} in-process, "
              f"gdb best of {args.gdb_runs} (wall time of gdb -batch -ex 'thread apply all bt')\n")
        print(stack_table(cores, args.runs, args.gdb_runs))
        if built:
            print("\nOpen time against core size (pmdb open_target, best of "
                  f"{args.runs}): must stay flat\n")
            print(open_table(cores[0], built[-1], args.runs))
        print(emulate_section(args.runs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.only is None:
        print()
        kernel_section(args)
        from bench import triage
        print("\n" + triage.section(args.runs))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


def kernel_section(args: argparse.Namespace) -> int:
    """Kernel dumps: pmdb open + ::status + ::ps + ::msgbuf next to crash and drgn."""
    from bench import versus  # pmdb vs drgn vs crash: J1-J3 as fresh processes, first
    from bench.kernel import DUMPS, kernel_table, profile

    print(versus.section(args.rounds) + "\n")
    print(f"Kernel dumps: open + ::status + ::ps + ::msgbuf; pmdb best of {args.runs} in-process "
          f"(per step) and as a fresh `pmdb -e` process; drgn and crash as fresh processes\n")
    text = kernel_table(args.runs)
    print(text or "no kernel dumps (../shared/fixtures absent)")
    if text:
        from bench import slab  # ::kmastat and ::kmem_verify over every cache
        print("\n" + slab.section(args.runs))
        from bench import stacks  # ::stacks and foreach bt over every task
        print("\n" + stacks.section(args.runs))
        from bench import dwarf  # the kernel's debug vmlinux: index cold and warm
        print("\n" + dwarf.section(args.runs))
        print("\n" + dwarf.lines_section(args.runs))
    first = next((p for p, _ in DUMPS if p.exists()), None)
    if args.profile and first is not None:
        print(f"\nProfile of one in-process run on {first.name} (cumulative):\n")
        print(profile(first))
    return 0 if text else 1


if __name__ == "__main__":
    sys.exit(main())
