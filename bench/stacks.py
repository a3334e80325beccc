"""Kernel stacks: ``::stacks`` and ``foreach bt`` over every task, pmdb next to crash and drgn.

pmdb is timed two ways. In-process: a freshly opened target (not timed), then
one command with its output formatted into a buffer, so the ORC tables, the
task list and every stack are read for the first time; best of N. As a fresh
``python -m pmdb -q DUMP -e CMD`` process: start-up, imports, open and output
included; best of N wall time after a warm-up. Figure to reach: each command
under 0.5 s in-process for all the tasks (60 or 61) of a fixture.

crash's ``foreach bt`` runs only with crash 8.0.4+ and the dump's DWARF vmlinux
(bench/kernel.py says why it cannot when it cannot). drgn 0.3.0 has no BTF
reader: without DWARF it has no types, so no task list and no ``stack_trace()``
(it answers ``LookupError: could not find 'init_pid_ns'``). What it can do is
timed instead (``python -m bench.stacks --drgn DUMP``): open the dump, load
kallsyms from VMCOREINFO, and ask for each task's stack (by crash's pids),
counting the answers; its column is marked so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.table import table
from bench.timing import best_command, command_on_fresh_target
from pmdb.dumps.zst import decompressed
from tests.conftest import FIXTURES

COMMANDS = ("::stacks", "foreach bt")
GOAL = 0.5
KASLR = FIXTURES / "linux-6.1-x86_64"
DUMPS = ((KASLR / "dump.202611221942", "6.1, -c -d31 (kdump, zlib)"),
         (KASLR / "vmcore.kdump-zlib", "6.1, QEMU kdump-zlib"),
         (KASLR / "vmcore.elf.zst", "6.1, QEMU ELF (.zst cache)"),
         (FIXTURES / "linux-6.1-x86_64-nokaslr" / "dump.202611221946", "6.1 nokaslr, -c -d31"),
         (FIXTURES / "linux-6.1-x86_64-slub" / "dump.202611222031", "6.1 slub, -c -d31"))
HEADERS = ["dump", "tasks", "::stacks", "foreach bt", "::stacks (cold)", "foreach bt (cold)",
           "drgn (no stacks)", "crash foreach bt", "crash/pmdb"]


def best_in_process(path: Path, line: str, runs: int) -> tuple[float, int]:
    best = best_command(path, line, runs)
    return best.seconds, best.threads


def cold(path: Path, line: str, runs: int) -> float | None:
    from bench.kernel import best_process

    wall, _, status = best_process([sys.executable, "-m", "pmdb", "-q", str(path), "-e", line], runs)
    return wall if status == 0 else None


def crash_foreach(path: Path, runs: int) -> tuple[float | None, str]:
    """crash's foreach bt time, or None and why not."""
    from bench.kernel import crash_command_cost

    return crash_command_cost(path, "foreach bt", runs)


def drgn_attempt(path: Path, runs: int) -> tuple[float | None, str]:
    """drgn's open + kallsyms + stack_trace() per task, as a fresh process; None if no drgn."""
    from bench.kernel import best_process, drgn_available

    ok, why = drgn_available()
    if not ok:
        return None, why
    wall, _, status = best_process([sys.executable, "-m", "bench.stacks", "--drgn", str(path)], runs)
    return (wall, "") if status == 0 else (None, "drgn failed to open the dump")


def drgn_main(path: str) -> int:
    """The child process: what drgn 0.3.0 does when asked for every task's stack without DWARF."""
    import drgn
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    prog = drgn.Program(drgn.host_platform)       # QEMU's kdump has an empty utsname
    prog.set_core_dump(path)
    prog.register_symbol_finder("kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    answered, why = 0, ""
    for pid in range(0, 110):
        try:
            prog.stack_trace(pid)
            answered += 1
        except (LookupError, ValueError) as err:
            why = why or str(err)
    sys.stdout.write(f"stack traces: {answered}; {why}\n")
    return 0


def rows(runs: int) -> tuple[list[list[str]], list[str]]:
    notes: list[str] = []
    out = []
    for path, label in DUMPS:
        if not path.exists():
            continue
        plain = Path(decompressed(str(path))) if path.suffix == ".zst" else path
        command_on_fresh_target(path, "::stacks")          # warm: the .zst cache, the BTF cache, bytecode
        stacks_s, tasks = best_in_process(path, "::stacks", runs)
        bt_s, _ = best_in_process(path, "foreach bt", runs)
        cold_stacks, cold_bt = cold(path, "::stacks", runs), cold(path, "foreach bt", runs)
        d_wall, d_why = drgn_attempt(plain, runs)
        c_wall, c_why = crash_foreach(plain, 1)
        for why, who in ((d_why, "drgn"), (c_why, "crash")):
            if why and f"{who}: not available: {why}" not in notes:
                notes.append(f"{who}: not available: {why}")
        out.append([label, str(tasks), _ms(stacks_s), _ms(bt_s), _ms(cold_stacks), _ms(cold_bt),
                    _ms(d_wall), _ms(c_wall), f"{c_wall / bt_s:.1f}x" if c_wall else "-"])
    return out, notes


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds is not None else "n/a"


def section(runs: int) -> str:
    """The printable section: the table, the figure, and why a column is empty."""
    found, notes = rows(runs)
    if not found:
        return "(kernel stacks: no kernel dumps)"
    worst = max(max(float(r[2].split()[0]), float(r[3].split()[0])) for r in found) / 1000
    head = (f"Kernel stacks: ::stacks and foreach bt over every task; pmdb best of {runs} on a fresh "
            "target (in-process) and as a fresh `pmdb -e` process (cold)\n\n")
    lines = [head + table(HEADERS, found), "",
             f"slowest in-process command: {worst * 1000:.0f} ms "
             f"({'within' if worst < GOAL else 'ABOVE'} the {GOAL} s figure)",
             "drgn 0.3.0 without DWARF: no types, so no tasks and no stack_trace() (every call answers "
             "LookupError); its column is open + kallsyms + those failed calls, not stacks"]
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--drgn", metavar="DUMP", help="(child process) time drgn's attempt on DUMP")
    args = ap.parse_args(argv)
    if args.drgn:
        return drgn_main(args.drgn)
    print(section(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
