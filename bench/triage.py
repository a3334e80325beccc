"""``pmdb triage`` throughput: dumps per minute on the tests' fleet (tests/test_triage.py's
lab dumps, the shared fixture dumps and user cores) with 1 and 2 Dask worker processes, and
what one dump costs next to a single ``pmdb -e '::status'`` process on a dump."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from bench.kernel import best_process
from bench.table import table


def fleet() -> list[str]:
    """The fleet's dumps that exist here."""
    from tests.conftest import FIXTURES
    from tests.kernel_truth import lab_dump
    from tests.test_triage import lab_fleet

    paths = [lab_dump(r, s) / f for r, s, f in lab_fleet()]
    for d in ("linux-6.1-x86_64", "linux-6.1-x86_64-nokaslr", "linux-6.1-x86_64-slub"):
        paths += sorted((FIXTURES / d).glob("dump.*"))
    paths += sorted((FIXTURES / "user-cores").glob("*.core"))
    return [str(p) for p in paths if p.is_file()]


def _rate(dumps: list[str], workers: int) -> tuple[float, float, int]:
    """(seconds to start the LocalCluster, seconds to triage every dump on it, failed dumps);
    no results file, so every dump is read."""
    from dask.distributed import LocalCluster

    from pmdb.triage import triage_run

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        started = time.perf_counter() - t0
        triage_run([dumps[0]], scheduler=cluster.scheduler_address)     # workers import pmdb once
        t1 = time.perf_counter()
        records = triage_run(dumps, scheduler=cluster.scheduler_address).records
        took = time.perf_counter() - t1
    return started, took, sum(1 for r in records if r["error"])


def section(runs: int) -> str:
    dumps = fleet()
    if len(dumps) < 4:
        return "(triage: no fleet here: make the lab's dumps as .ci/run does)"
    rows, per_dump = [], {}
    # two interleaved rounds, the best of each: the first round also fills pmdb's cache (each
    # kernel's decoded kallsyms and BTF) and the page cache, which would favour what runs second
    best: dict[int, tuple[float, float, int]] = {}
    for workers in (1, 2, 1, 2):
        result = _rate(dumps, workers)
        if workers not in best or result[1] < best[workers][1]:
            best[workers] = result
    for workers in (1, 2):
        started, took, failed = best[workers]
        per_dump[workers] = took / len(dumps)
        rows.append([f"{workers} worker{'s' if workers > 1 else ''}", str(len(dumps)), str(failed),
                     f"{started:.1f} s", f"{took:.1f} s", f"{60 * len(dumps) / took:.0f}"])
    text = table(["cluster", "dumps", "failed", "cluster start", "triage", "dumps/min"], rows)
    speedup = per_dump[1] / per_dump[2]
    probe = next((d for d in dumps if "6.1.0-57-amd64/null/" in d), dumps[0])
    status_s, rss, _ = best_process([sys.executable, "-m", "pmdb", "-q", probe, "-e", "::status"], runs)
    return (f"Fleet triage (pmdb triage on Dask LocalCluster worker processes; {len(dumps)} dumps: "
            f"lab vmcores, fixture dumps, user cores)\n\n{text}\n"
            f"2 workers / 1 worker: {speedup:.2f}x faster (best of 2 interleaved rounds each)\n"
            f"per dump: {per_dump[1] * 1000:.0f} ms on 1 worker, {per_dump[2] * 1000:.0f} ms of wall time on 2; "
            f"one `pmdb -e '::status'` process on {Path(probe).parent.name}/{Path(probe).name}: "
            f"{status_s * 1000:.0f} ms (best of {runs}, {rss:.0f} MB peak)")
