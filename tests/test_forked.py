"""pmdb.forked: work handed to a forked child, its one result taken back or given up."""

from __future__ import annotations

import os
import threading
import time

import pytest

from pmdb import forked


@pytest.fixture(autouse=True)
def can_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child is started only with a second CPU and no other thread; the tests want one
    anyway (earlier tests of the run may leave threads behind: dask's, prompt_toolkit's)."""
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    monkeypatch.setattr(forked, "single_threaded", lambda: True)


def _gone(pid: int) -> bool:
    """Reaped: no zombie left behind."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_the_childs_bytes_come_back_whole() -> None:
    big = os.urandom(3 << 20)                    # more than a pipe holds at once
    child = forked.start(lambda: big)
    assert child is not None and child.pid != os.getpid()
    assert child.result(30) == big
    assert _gone(child.pid)


def test_the_child_sees_the_parents_state_as_it_was_at_fork() -> None:
    state = {"n": 1}
    child = forked.start(lambda: str(state["n"]).encode())
    state["n"] = 2
    assert child is not None and child.result(30) == b"1"


def test_a_failing_child_gives_nothing() -> None:
    def boom() -> bytes:
        raise RuntimeError("no")
    child = forked.start(boom)
    assert child is not None and child.result(30) is None
    assert _gone(child.pid)


def test_a_slow_child_is_killed_when_patience_runs_out() -> None:
    child = forked.start(lambda: (time.sleep(60), b"late")[1])
    assert child is not None
    began = time.monotonic()
    assert child.result(0.3) is None
    assert time.monotonic() - began < 10 and _gone(child.pid)


def test_a_cancelled_child_is_reaped() -> None:
    child = forked.start(lambda: (time.sleep(60), b"late")[1])
    assert child is not None
    child.cancel()
    assert _gone(child.pid) and child.result(1) is None


def test_the_child_never_writes_to_the_parents_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    def chatty() -> bytes:
        print("from the child")
        os.write(2, b"child stderr\n")
        return b"ok"
    child = forked.start(chatty)
    assert child is not None and child.result(30) == b"ok"
    out, err = capfd.readouterr()
    assert "child" not in out + err


def test_nothing_is_forked_on_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked, "cpus", lambda: 1)
    assert forked.start(lambda: b"x") is None


def test_nothing_is_forked_beside_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert forked.start(lambda: b"x") is None
    finally:
        stop.set()
        other.join()
