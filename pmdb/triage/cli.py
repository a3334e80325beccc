"""``pmdb triage PATH...``: the subcommand's arguments, progress bar and outputs.

Exit status: 0 when the run finished (dumps that failed are rows, not a failed run),
2 for a usage error, no dump found, or a cluster that cannot be reached (one line).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pmdb.errors import PmdbError

EXIT_OK, EXIT_USAGE = 0, 2


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(f"{message} (pmdb triage --help for usage)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pmdb triage",
                description="Turn many dumps (kernel vmcores and user cores) into a ranked list of "
                            "distinct crashes, each dump a Dask task.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="dump files, or directories to search for dumps")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local Dask cluster (default: one per CPU)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use this Dask scheduler instead")
    p.add_argument("--json", action="store_true", help="print crashes and records as JSON")
    p.add_argument("--html", metavar="REPORT", help="also write an HTML report with a chart over time")
    p.add_argument("--results", metavar="FILE",
                   help="the results file a rerun reuses (default: triage.jsonl in pmdb's cache)")
    p.add_argument("--fresh", action="store_true", help="triage every dump again (ignore stored results)")
    p.add_argument("--config", metavar="FILE", help="a pmdb.toml for the workers")
    return p


def main(argv: Sequence[str]) -> int:
    """The subcommand; see the module docstring for the exit status."""
    try:
        args = build_parser().parse_args(list(argv))
        if args.workers is not None and args.workers < 1:
            raise _Usage("--workers needs at least 1")
        return _run(args)
    except (_Usage, PmdbError) as err:
        sys.stderr.write(f"pmdb triage: {err}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("pmdb triage: interrupted (finished dumps are kept in the results file)\n")
        return 1


def _run(args: argparse.Namespace) -> int:
    from pmdb.triage.discover import find_dumps
    from pmdb.triage.group import group
    from pmdb.triage.runner import run
    from pmdb.triage.store import ResultStore, default_path

    dumps = find_dumps(args.paths)
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise _Usage(f"no such file or directory: {missing[0]}")
    if not dumps:
        raise _Usage(f"no dumps found in {', '.join(args.paths)}")
    results = args.results or default_path()
    if args.fresh and os.path.exists(results):
        os.unlink(results)
    bar = _Bar(sys.stderr)
    try:
        result = run(dumps, store=ResultStore(results), workers=args.workers, scheduler=args.scheduler,
                     config_path=args.config, on_start=bar.start, on_record=bar.advance)
    finally:
        bar.finish()
    crashes, errors = group(result.records)
    if args.html:
        from pmdb.triage.html import write_report

        write_report(args.html, crashes, errors, result.records)
    if args.json:
        from pmdb.triage.render import document, write_json

        write_json(document(result.records, crashes, errors), sys.stdout)
    else:
        from pmdb.triage.render import print_table

        print_table(crashes, errors, sys.stdout)
    sys.stderr.write(f"pmdb triage: {len(dumps)} dumps ({result.triaged} triaged, {result.reused} from "
                     f"{results}), {len(crashes)} distinct crashes, {len(errors)} failed\n")
    return EXIT_OK


class _Bar:
    """A rich progress bar on a terminal; nothing when stderr is a file or a pipe."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._progress: Any = None
        self._task: Any = None

    def start(self, todo: int, reused: int) -> None:
        if not todo or not self.stream.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("triage"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  TextColumn("{task.description}"), console=Console(file=self.stream),
                                  transient=True)
        self._progress.start()
        self._task = self._progress.add_task(f"({reused} reused)" if reused else "", total=todo)

    def advance(self, rec: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=os.path.basename(rec["path"]))

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
