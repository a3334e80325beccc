"""``python -m tests.fuzz --list`` | ``python -m tests.fuzz TARGET [--runs N] [--seconds S]
[--engine atheris|random] [--seed K]`` | ``python -m tests.fuzz --replay FILE.json ...``.

A campaign prints one line of counts (inputs, rate, slowest input, peak RSS, findings)
every 5000 inputs and at the end; findings go to ``--crashes`` (default
/tmp/pmdb-fuzz-crashes) as the input and, for in-dump targets, its patches in JSON,
ready to keep in tests/data/fuzz/ as a regression test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    ap.add_argument("target", nargs="?")
    ap.add_argument("--list", action="store_true", help="list the targets")
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--crashes", type=Path, default=Path("/tmp/pmdb-fuzz-crashes"))
    ap.add_argument("--corpus", type=Path, default=None, help="atheris's working corpus directory")
    ap.add_argument("--replay", nargs="*", type=Path, help="run kept findings (.bin or .json)")
    ap.add_argument("--traceback", action="store_true", help="print each finding's traceback")
    args = ap.parse_args(argv)
    if args.list:
        from tests.fuzz.targets import all_targets

        for t in all_targets().values():
            print(f"{t.name:12} {'in-dump ' if t.patches else ''}{t.doc}")
        return 0
    if args.replay:
        return _replay(args.replay)
    if not args.target:
        ap.error("name a target (--list shows them)")
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "random"
    if engine == "atheris":
        from tests.fuzz.runner import run_atheris

        corpus = args.corpus or Path(f"/tmp/pmdb-fuzz-corpus/{args.target}")
        run_atheris(args.target, args.runs, args.seconds, args.crashes, corpus)
        return 0
    from tests.fuzz.runner import run_random
    from tests.fuzz.targets import all_targets

    target = all_targets()[args.target]
    stats = run_random(target, args.runs, args.seconds, args.seed, args.crashes)
    print(stats.line(target.name), flush=True)
    return 1 if stats.findings else 0


def _replay(paths: list[Path]) -> int:
    """Run kept findings again, each timed as a campaign times it: one over runner.SLOW
    (taken under load, say) is a finding still only if it is slow here too."""
    from tests.fuzz.harness import patches_from_json
    from tests.fuzz.runner import SLOW
    from tests.fuzz.targets import all_targets

    targets = all_targets()
    bad = 0
    for path in paths:
        # a finding kept as JSON names its target; an input file alone (atheris's artifacts,
        # "kallsyms-timeout-SHA") is named after it
        record = json.loads(path.read_text()) if path.suffix == ".json" else {"target": path.name.split("-")[0]}
        target = targets.get(record["target"])
        if target is None:
            bad += 1
            print(f"{path}: no fuzz target {record['target']!r}", file=sys.stderr)
            continue
        start = time.monotonic()
        try:
            if "patches" in record and target.replay is not None:
                target.replay(patches_from_json(record["patches"], target.base()))
            else:
                target.run((path.with_suffix(".bin") if path.suffix == ".json" else path).read_bytes())
        except Exception as err:     # noqa: BLE001
            bad += 1
            print(f"{path}: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        took = time.monotonic() - start
        if took > SLOW:
            bad += 1
            print(f"{path}: slow: {took:.2f} s", file=sys.stderr)
        else:
            print(f"{path}: ok ({took * 1000:.0f} ms)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
