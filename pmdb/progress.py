"""Progress of long work (decompressing a dump, scanning memory), shown the way the stream allows.

Low layers take a ``Progress`` and call ``start``/``advance``/``finish``; the caller
picks how it shows: a bar on a terminal (rich), one line of notice when stderr is
a file or a pipe, or nothing at all.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol


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

    def __init__(self, stream: IO[str], *, force_terminal: bool | None = None) -> None:
        self.stream = stream
        self.force_terminal = force_terminal
        self._bar: Any = None
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        from rich.console import Console
        from rich.errors import LiveError
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(file=self.stream, force_terminal=self.force_terminal)
        bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                       transient=True)
        try:
            bar.start()
        except LiveError:       # another bar is showing (a command inside a pipeline's bar)
            return
        self._bar = bar
        console.print(f"pmdb: {description}", markup=False, highlight=False)
        self._task = self._bar.add_task("", total=total or None)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class DelayedBar:
    """A bar of items done (``::walk kmem 120/184``) that appears only once the work has
    taken ``delay`` seconds, so quick commands never flash one; cleared when the work ends.
    The total may be unknown (0): the bar then pulses and counts."""

    def __init__(self, stream: IO[str], *, delay: float = 1.0, force_terminal: bool | None = None) -> None:
        self.stream = stream
        self.delay = delay
        self.force_terminal = force_terminal
        self._description = ""
        self._total = 0
        self._done = 0
        self._shown = 0                # what the bar shows (updated at most 10 times a second)
        self._began = 0.0
        self._next_check = 0.0
        self._bar: Any = None
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        self._description, self._total, self._done, self._shown = description, total, 0, 0
        self._began = time.monotonic()
        self._next_check = self._began + self.delay

    def advance(self, amount: int) -> None:
        self._done += amount
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + 0.1
        if self._bar is None and not self._show():
            self._next_check = float("inf")        # could not show: stop trying
            return
        self._bar.update(self._task, completed=self._done)

    def _show(self) -> bool:
        from rich.console import Console
        from rich.errors import LiveError
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=self.force_terminal)
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("^C stops it"), console=console, transient=True)
        try:
            bar.start()
        except LiveError:
            return False
        self._bar = bar
        self._task = bar.add_task(self._description, total=self._total or None)
        return True

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def command_bar(stream: IO[str] | None = None, *, delay: float = 1.0) -> Progress:
    """For a command over many items: a DelayedBar when the stream is a terminal, else nothing."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return DelayedBar(stream, delay=delay) if isatty is not None and isatty() else NoProgress()


def bar_or_nothing(stream: IO[str] | None = None) -> Progress:
    """For a dcmd's long scan: a bar on a terminal, nothing when stderr is a file or pipe
    (a command's stderr carries its errors, which a notice line would mix with)."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return BarProgress(stream) if isatty is not None and isatty() else NoProgress()


def for_stream(stream: IO[str] | None = None) -> Progress:
    """A bar on a terminal, a line elsewhere: how the command line shows long work."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return BarProgress(stream)
    return LineProgress(stream)
