"""Long scans at scale show progress and stop cleanly at ^C (pmdb.progress.tracked, and the
slab page scan's bar): the bar counts what is done, and is cleared however the loop ends."""

from __future__ import annotations

import io

import pytest

from pmdb.progress import BarProgress, tracked


class Recorder:
    """A Progress that writes down what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def start(self, description: str, total: int) -> None:
        self.calls.append(("start", total))

    def advance(self, amount: int) -> None:
        self.calls.append(("advance", amount))

    def finish(self) -> None:
        self.calls.append(("finish", None))


def test_tracked_counts_every_item_and_finishes() -> None:
    rec = Recorder()
    assert list(tracked(list(range(10)), "ten", rec, every=4)) == list(range(10))
    assert rec.calls[0] == ("start", 10)
    assert [a for k, a in rec.calls if k == "advance"] == [4, 4]
    assert rec.calls[-1] == ("finish", None)


def test_tracked_finishes_when_interrupted() -> None:
    """^C in the middle of the loop: the bar is finished (cleared) and the interrupt goes on
    up to the session, which ends the command with one line."""
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        for n in tracked(list(range(1000)), "many", rec, every=1):
            if n == 5:
                raise KeyboardInterrupt
    assert rec.calls[-1] == ("finish", None)
    assert sum(a for k, a in rec.calls if k == "advance" and isinstance(a, int)) == 5


def test_a_counting_bar_says_how_many_of_how_many() -> None:
    """On a terminal the bar counts things (tasks, slabs), not bytes."""
    stream = io.StringIO()
    bar = BarProgress(stream, force_terminal=True, counts=True)
    for _ in tracked(list(range(300)), "unwinding the stacks of 300 tasks", bar, every=100):
        pass
    text = stream.getvalue()
    assert "unwinding the stacks of 300 tasks" in text
    assert "/300" in text and "kB" not in text
