"""Emulation speed: ``bench(table, 64, 1000)`` from the user-core fixtures, instructions per second.

x86-64: pmdb's unicorn engine untraced and traced, against bare unicorn running the
same code from the same pages (mapped up front, no hooks), so the ratio shows
what pmdb's layer costs. SPARC64: pmdb's interpreter, when it is present.
Every run is checked against the result the program computed (expected.json).

    python -m bench.emulate_x86 [--runs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pmdb.config import Config
from pmdb.emulate import options
from pmdb.emulate.call import Emulation, prepare
from pmdb.emulate.engine import TraceEvent
from pmdb.opener import open_target

USER_CORES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "user-cores"
BUDGET = 50_000_000


@dataclass
class Row:
    label: str
    instructions: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.instructions / self.seconds


def _best(runs: int, once: Callable[[], float]) -> float:
    return min(once() for _ in range(max(runs, 1)))


def _emulation(core: str) -> tuple[Emulation, int]:
    """A prepared bench(table, 64, 1000) call and its expected result."""
    data = json.loads((USER_CORES / "expected.json").read_text())[core]
    call = next(c for c in data["calls"] if c["function"] == "bench")
    args = [int(a, 0) if isinstance(a, str) else a for a in call["args"]]
    target = open_target(str(USER_CORES / core), config=Config())
    opts = options.merge(options.check({"function": "bench", "args": args, "budget": BUDGET}, "bench"))
    sym = target.symbols.lookup

    def value(v: int | str) -> int:
        return v if isinstance(v, int) else sym(v, None).addr  # type: ignore[union-attr]

    em = prepare(target, opts, value)
    em.engine.record_writes = False   # type: ignore[attr-defined]
    em.start_regs = em.engine.registers()  # type: ignore[attr-defined]
    return em, call["result"]


def _runner(em: Emulation, expected: int, trace: Callable[[TraceEvent], None] | None) -> Callable[[], float]:
    """One timed call from the prepared state (registers restored; memory is unchanged by bench)."""
    engine = em.engine
    start = em.start_regs  # type: ignore[attr-defined]
    keep = [r for r in engine.arch.regs if r in start]

    def once() -> float:
        for r in keep:
            engine.set_reg(r, start[r])
        if "npc" in start:
            engine.set_reg("npc", start["npc"])
        t0 = time.perf_counter()
        stop = engine.run(sentinel=em.sentinel, budget=BUDGET, trace=trace)
        elapsed = time.perf_counter() - t0
        if stop.reason != "return" or engine.reg(engine.arch.retval) != expected:
            raise SystemExit(f"bench: emulation went wrong: {stop.describe()}")
        return elapsed

    return once


def _count(em: Emulation, expected: int) -> int:
    n = [0]

    def tick(_: TraceEvent) -> None:
        n[0] += 1

    _runner(em, expected, tick)()
    return n[0]


def _bare_unicorn(em: Emulation, expected: int, runs: int) -> float:
    """The same call on a fresh unicorn with the same pages mapped up front and no hooks."""
    import unicorn
    from unicorn import x86_const as X

    engine = em.engine
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    for base, buf in engine.pager.pages.items():
        uc.mem_map(base, len(buf))
        uc.mem_write(base, bytes(buf))
    regs = em.start_regs  # type: ignore[attr-defined]
    ids = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in
           ("rdi", "rsi", "rdx", "rsp", "rbx", "rbp", "r12", "r13", "r14", "r15")}

    def once() -> float:
        for n, rid in ids.items():
            uc.reg_write(rid, regs[n])
        t0 = time.perf_counter()
        uc.emu_start(regs["rip"], em.sentinel)
        elapsed = time.perf_counter() - t0
        if uc.reg_read(X.UC_X86_REG_RAX) != expected:
            raise SystemExit("bench: bare unicorn went wrong")
        return elapsed

    once()  # translate once, as the pmdb runs are measured warm too
    return _best(runs, once)


def x86_rows(runs: int) -> list[Row]:
    em, expected = _emulation("hashcrash-x86_64-O2.core")
    n = _count(em, expected)
    untraced = _runner(em, expected, None)
    untraced()
    rows = [Row("x86-64 bare unicorn", n, _bare_unicorn(em, expected, runs)),
            Row("x86-64 pmdb untraced", n, _best(runs, untraced))]
    events: list[TraceEvent] = []
    traced = _runner(em, expected, events.append)

    def traced_once() -> float:
        events.clear()
        return traced()

    rows.append(Row("x86-64 pmdb traced", n, _best(runs, traced_once)))
    return rows


def sparc_rows(runs: int) -> tuple[list[Row], str]:
    try:
        em, expected = _emulation("hashcrash-sparc64-O2.core")
    except Exception as err:  # the SPARC engine may not exist yet: say so, measure the rest
        return [], f"SPARC64: not measured ({type(err).__name__}: {err})"
    n = _count(em, expected)
    once = _runner(em, expected, None)
    return [Row("SPARC64 pmdb untraced", n, _best(runs, once))], ""


def table(runs: int) -> tuple[list[list[str]], list[str]]:
    """Rows for bench/__main__.py's table, and notes (figures to reach)."""
    rows = x86_rows(runs)
    sparc, note = sparc_rows(runs)
    bare = rows[0].seconds
    cells = [[r.label, f"{r.instructions}", f"{r.seconds * 1000:.2f} ms", f"{r.rate / 1e6:.2f} M/s",
              f"{r.seconds / bare:.2f}x" if r.label.startswith("x86") else "-"] for r in rows + sparc]
    notes = [note] if note else []
    notes.append("targets: x86-64 untraced within 2x of bare unicorn; traced >= 0.2 M/s; "
                 "SPARC64 untraced >= 1 M/s")
    return cells, notes


HEADERS = ["emulation of bench(table, 64, 1000)", "instructions", "time", "rate", "vs bare"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.emulate_x86", description=__doc__)
    ap.add_argument("--runs", type=int, default=5, help="runs per row (best is shown)")
    args = ap.parse_args(argv)
    if not USER_CORES.is_dir():
        print("no fixtures (../shared/fixtures/user-cores) to measure")
        return 1
    cells, notes = table(args.runs)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(HEADERS)]
    for line in [HEADERS, *cells]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(line, widths, strict=True))))
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
