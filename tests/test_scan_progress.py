"""Long scans show a bar only on a terminal, and ^C ends them cleanly (the bar is taken
down, the command reports one line, the session goes on)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from pmdb.progress import BarProgress, NoProgress, bar_or_nothing
from tests.linux_session import KASLR, run, target_for

DUMP = "dump.202611221942"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_only_on_a_terminal() -> None:
    assert isinstance(bar_or_nothing(_Tty()), BarProgress)
    assert isinstance(bar_or_nothing(io.StringIO()), NoProgress)


class _Recorder(NoProgress):
    def __init__(self) -> None:
        self.started, self.done, self.finished = 0, 0, False

    def start(self, description: str, total: int) -> None:
        self.started = total

    def advance(self, amount: int) -> None:
        self.done += amount

    def finish(self) -> None:
        self.finished = True


def test_kmem_p_reports_progress_and_stops_on_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    from pmdb.commands.registry import builtin_package

    mem = __import__(f"{builtin_package('dcmds').__name__}.linux_memory", fromlist=["page_line"])

    t = target_for(KASLR, DUMP)
    bar = _Recorder()
    monkeypatch.setattr(mem, "bar_or_nothing", lambda stream=None: bar)
    real, calls = mem.page_line, [0]

    def line_then_interrupt(*args: Any) -> str:
        calls[0] += 1
        if calls[0] > 100:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mem, "page_line", line_then_interrupt)
    out, err = run(t, "kmem -p")
    assert err == "pmdb: interrupted\n" and bar.finished, (err, bar.finished, calls, len(out))
    assert len(out.splitlines()) == 101 and bar.done == 100 * 4096 and bar.started > bar.done
    monkeypatch.undo()
    out, err = run(t, "kmem -p 1000")                      # the next command runs as ever
    assert not err and len(out.splitlines()) == 2
