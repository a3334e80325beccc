"""SPARC64 interpreter speed: instructions per second on ``bench(table, 64, 1000)``.

    python -m bench.emulate_sparc [--runs N]

Runs the fixture program's own ``bench`` function (1000 hash lookups) from each
sparc64 core, untraced and traced (a TraceEvent per instruction handed to a
callback that keeps them), best of N fresh engines each, and checks the result
against the value the program computed natively. ``measure()`` is what the
``python -m bench`` table calls.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from pmdb.config import Config
from pmdb.emulate.engine import TraceEvent
from pmdb.emulate.pager import DemandPager
from pmdb.emulate.sparc64 import SparcV9
from pmdb.opener import open_target
from pmdb.target import Target

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "user-cores"
CORES = ("hashcrash-sparc64-O2.core", "hashcrash-sparc64-O0.core")
BIAS = 2047


@dataclass
class SparcRate:
    core: str
    instructions: int       # executed by one bench(table, 64, 1000) call
    untraced: float         # instructions per second, best run
    traced: float


def _engine(target: Target, exp: dict) -> tuple[SparcV9, int]:
    """A fresh engine set up to call bench(g_table, 64, 1000), as the fixture README says."""
    engine = SparcV9(target.arch, DemandPager(target.memory, 8192, (), "big"))
    crash = exp["crash_registers"]
    frame = (int(crash["o6"], 16) + BIAS - 4096) & ~0xF
    call = next(c for c in exp["calls"] if c["function"] == "bench")
    for i, arg in enumerate(call["args"]):
        engine.set_reg(f"o{i}", int(arg, 0) if isinstance(arg, str) else arg)
    engine.set_reg("o7", engine.sentinel - 8)
    engine.set_reg("o6", frame - 176 - BIAS)
    engine.set_reg("g7", int(crash["g7"], 16))
    bench = target.symbols.lookup("bench")
    if bench is None:
        raise SystemExit("the core has no symbol 'bench'")
    engine.set_reg("pc", bench.addr)
    return engine, int(call["result"])


def _once(target: Target, exp: dict, traced: bool) -> tuple[int, float]:
    engine, want = _engine(target, exp)
    events: list[TraceEvent] = []
    t0 = time.perf_counter()
    stop = engine.run(sentinel=engine.sentinel, budget=50_000_000,
                      trace=events.append if traced else None)
    elapsed = time.perf_counter() - t0
    if stop.reason != "return" or engine.reg("o0") != want:
        raise SystemExit(f"bench gave {engine.reg('o0')} ({stop.describe()}), expected {want}")
    if traced and len(events) != stop.instructions:
        raise SystemExit("the trace does not have one event per instruction")
    return stop.instructions, elapsed


def measure(core: Path, runs: int = 3) -> SparcRate:
    """Best-of-``runs`` rates for one sparc64 core (decoding and page-ins included)."""
    target = open_target(str(core), config=Config())
    exp = json.loads((core.parent / "expected.json").read_text())[core.name]
    rates, count = {}, 0
    for traced in (False, True):
        results = [_once(target, exp, traced) for _ in range(max(runs, 1))]
        count = results[0][0]
        rates[traced] = count / min(elapsed for _, elapsed in results)
    return SparcRate(core.name, count, rates[False], rates[True])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.emulate_sparc", description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (best is shown)")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES, help="the user-cores directory")
    args = ap.parse_args(argv)
    cores = [args.fixtures / c for c in CORES if (args.fixtures / c).exists()]
    if not cores:
        print(f"no sparc64 cores under {args.fixtures}")
        return 1
    print(f"{'core':<28}{'instructions':>14}{'untraced':>16}{'traced':>16}")
    for core in cores:
        r = measure(core, args.runs)
        print(f"{r.core:<28}{r.instructions:>14}{r.untraced / 1e6:>12.2f} M/s"
              f"{r.traced / 1e3:>12.0f} k/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
