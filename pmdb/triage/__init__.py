"""Fleet triage: many dumps -> one record each -> distinct crashes ranked by count, run as
Dask tasks (``pmdb triage PATH...``, or ``pmdb.triage.triage`` from Python).

record.py reads one dump (kernel.py, user.py), signature.py normalizes its stack,
group.py groups and ranks, runner.py runs the dumps on Dask, store.py keeps results
across runs, render.py and html.py show them, cli.py is the subcommand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pmdb.triage.group import Crash, group
from pmdb.triage.record import Record, triage_dump
from pmdb.triage.runner import RunResult, TriageError

__all__ = ["Crash", "Record", "RunResult", "TriageError", "group", "triage", "triage_dump", "triage_run"]


def triage_run(paths: Sequence[str], *, workers: int | None = None, scheduler: str | None = None,
               results: str | os.PathLike[str] | None = None, config: str | None = None) -> RunResult:
    """Triage the dumps in ``paths`` (files, or directories searched for dumps) on Dask:
    a local cluster of ``workers`` processes, or the scheduler at ``scheduler``
    (``tcp://HOST:PORT``). ``results`` is a results file (reused and extended); None keeps
    nothing between runs. ``config`` is a pmdb.toml for the workers."""
    from pmdb.triage.discover import find_dumps
    from pmdb.triage.runner import run
    from pmdb.triage.store import ResultStore

    return run(find_dumps(paths), store=ResultStore(results), workers=workers, scheduler=scheduler,
               config_path=config)


def triage(paths: Sequence[str], *, workers: int | None = None, scheduler: str | None = None,
           results: str | os.PathLike[str] | None = None, config: str | None = None) -> list[Record]:
    """The records of the dumps in ``paths``, in order (options as for triage_run);
    group() turns them into ranked crashes."""
    return triage_run(paths, workers=workers, scheduler=scheduler, results=results, config=config).records
