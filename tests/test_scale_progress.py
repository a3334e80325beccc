"""Long scans at scale show progress (the slab page scan's bar counts pages, not bytes).
Commands' bars and ^C are tested with ctx.progressing in tests/test_repl_prompt.py."""

from __future__ import annotations

import io

from pmdb.progress import BarProgress


def test_a_counting_bar_says_how_many_of_how_many() -> None:
    """On a terminal the bar counts things (tasks, slabs), not bytes."""
    stream = io.StringIO()
    bar = BarProgress(stream, force_terminal=True, counts=True)
    bar.start("unwinding the stacks of 300 tasks", 300)
    for _ in range(3):
        bar.advance(100)
    bar.finish()
    text = stream.getvalue()
    assert "unwinding the stacks of 300 tasks" in text
    assert "/300" in text and "kB" not in text
