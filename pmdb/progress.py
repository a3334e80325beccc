"""Progress of long work (decompressing a dump, scanning memory), shown the way the stream allows.

Low layers take a ``Progress`` and call ``start``/``advance``/``finish``; the caller
picks how it shows: a bar on a terminal (rich), one line of notice when stderr is
a file or a pipe, or nothing at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any, Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    def start(self, description: str, total: int) -> None: ...
    def advance(self, amount: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    """Shows nothing (tests, the Python API, benchmarks)."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


class LineProgress(NoProgress):
    """One line saying what is under way, for a log file or a pipe."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def start(self, description: str, total: int) -> None:
        print(f"pmdb: {description}", file=self.stream, flush=True)


class BarProgress:
    """A rich progress bar (bytes done, rate, time left), cleared when the work ends."""

    def __init__(self, stream: IO[str], *, force_terminal: bool | None = None, counts: bool = False) -> None:
        self.stream = stream
        self.force_terminal = force_terminal
        self.counts = counts          # things done of a total (tasks, slabs), not bytes
        self._bar: Any = None
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(file=self.stream, force_terminal=self.force_terminal)
        done = (MofNCompleteColumn(),) if self.counts else (DownloadColumn(), TransferSpeedColumn())
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), *done,
                             TimeRemainingColumn(), console=console, transient=True)
        self._bar.start()
        console.print(f"pmdb: {description}", markup=False, highlight=False)
        self._task = self._bar.add_task("", total=total or None)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def bar_or_nothing(stream: IO[str] | None = None, *, counts: bool = False) -> Progress:
    """For a dcmd's long scan: a bar on a terminal, nothing when stderr is a file or pipe
    (a command's stderr carries its errors, which a notice line would mix with). ``counts``:
    the bar counts things (tasks, slabs), not bytes."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream, counts=counts) if isatty is not None and isatty() else NoProgress()


def tracked(items: Sequence[T], description: str, progress: Progress | None = None,
            every: int = 64) -> Iterator[T]:
    """The items, with a bar counting them on a terminal (``bar_or_nothing``); the bar is
    cleared when the loop ends, breaks, or stops at ^C (KeyboardInterrupt goes on up)."""
    progress = progress if progress is not None else bar_or_nothing(sys.stderr, counts=True)
    progress.start(description, len(items))
    try:
        for n, item in enumerate(items, 1):
            yield item
            if n % every == 0:
                progress.advance(every)
    finally:
        progress.finish()


def for_stream(stream: IO[str] | None = None) -> Progress:
    """A bar on a terminal, a line elsewhere: how the command line shows long work."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return BarProgress(stream)
    return LineProgress(stream)
