"""Triage many dumps as Dask tasks: one task per dump, on a local cluster of worker
processes (parsing a dump is CPU-bound Python: threads would share one GIL) or on an
existing dask.distributed scheduler. Results are kept in the ResultStore as they arrive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from pmdb.errors import PmdbError
from pmdb.triage.record import Record, empty_record, triage_dump
from pmdb.triage.store import ResultStore

CONNECT_TIMEOUT = 15          # seconds to reach a --scheduler before giving up


class TriageError(PmdbError):
    """The run itself cannot go on (no cluster): one line."""


@dataclass
class RunResult:
    records: list[Record] = field(default_factory=list)   # in the order the dumps were given
    triaged: int = 0                                       # dumps read in this run
    reused: int = 0                                        # dumps whose stored record was still valid


def triage_task(path: str, config_path: str | None = None) -> Record:
    """What one Dask task runs: a dump's record (errors included), with pmdb.toml loaded
    in the worker (the worker may be another machine)."""
    from pmdb.config import Config

    try:
        config = Config.load(config_path)
    except PmdbError as err:
        rec = empty_record(path)
        rec["kind"], rec["error"] = "error", str(err)
        return rec
    return triage_dump(path, config)


def run(dumps: list[str], *, store: ResultStore, workers: int | None = None, scheduler: str | None = None,
        config_path: str | None = None, on_start: Callable[[int, int], None] | None = None,
        on_record: Callable[[Record], None] | None = None) -> RunResult:
    """Triage ``dumps``: those the store already holds (same path, size, mtime) are reused,
    the rest are one Dask task each. ``on_start(to_do, reused)`` and ``on_record`` report
    progress (the CLI's bar)."""
    done: dict[str, Record] = {}
    todo: list[str] = []
    for path in dumps:
        rec = store.get(path)
        if rec is not None:
            done[path] = rec
        else:
            todo.append(path)
    result = RunResult(reused=len(done))
    if on_start is not None:
        on_start(len(todo), len(done))
    if todo:
        for path, rec in _compute(todo, workers, scheduler, config_path):
            store.add(rec)
            done[path] = rec
            result.triaged += 1
            if on_record is not None:
                on_record(rec)
    result.records = [done[p] for p in dumps]
    return result


def _compute(todo: list[str], workers: int | None, scheduler: str | None,
             config_path: str | None) -> Any:
    """(path, record) as each task finishes; a task that died with its worker is an error row."""
    from dask.distributed import as_completed

    with ExitStack() as stack:
        client = _client(stack, workers, scheduler)
        futures = client.map(triage_task, todo, config_path=config_path, pure=False)
        path_of = {f.key: p for f, p in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            path = path_of[future.key]
            try:
                rec = future.result()
            except Exception as err:     # noqa: BLE001 - a worker lost mid-task: one row, not the run
                rec = empty_record(path)
                rec["kind"] = "error"
                rec["error"] = f"{os.path.basename(path)}: the task failed ({type(err).__name__}: {err})"
            yield path, rec


def _client(stack: ExitStack, workers: int | None, scheduler: str | None) -> Any:
    """A Client of the scheduler named, or of a new LocalCluster of worker processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
        except (OSError, TimeoutError) as err:
            raise TriageError(f"cannot reach the Dask scheduler {scheduler}: {err}") from None
    n = workers or min(os.cpu_count() or 1, 8)
    cluster = stack.enter_context(LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=logging.ERROR))
    return stack.enter_context(Client(cluster))
