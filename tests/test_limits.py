"""[limits] in pmdb.toml: what one command may print, read and hand on; streaming; ^C.

The fuzzing campaign of issue 13 found ``init_task,ffffffff/n`` running for ever with
memory growing, and ``init_task,ffffffff/X`` / ``slab_caches,ADDR/q | ::help`` taking
seconds and hundreds of MB before a fault ended them. Each now stops at a limit with one
line naming it; format output is written as it is made; ^C stops any of it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from pmdb.config import Config
from pmdb.session import Session
from tests.conftest import ROOT
from tests.linux_session import DUMPS, target_for

SMALL = {"limits.max_lines": 1000, "limits.max_read_bytes": 100_000, "limits.max_items": 500}
_WHAT = {"limits.max_lines": "lines of output", "limits.max_items": "addresses handed on",
         "init_task,ffffffff/+": "repetitions of a format that neither reads nor prints",
         "init_task,ffffffff/0X": "repetitions of a format that neither reads nor prints"}


def _session(stdout: io.StringIO | None = None, **limits: int) -> tuple[Session, io.StringIO]:
    folder, name = DUMPS[0]
    err = io.StringIO()
    session = Session(target_for(folder, name), config=Config({**SMALL, **limits}),
                      stdout=stdout if stdout is not None else io.StringIO(), stderr=err)
    return session, err


@pytest.mark.parametrize(("line", "limit"), [
    ("init_task,ffffffff/n", "limits.max_lines"),
    ("init_task,ffffffff/X", "limits.max_lines"),
    ("init_task,ffffffff/4X", "limits.max_lines"),
    ("slab_caches,ffff8be102a71840/q | ::help", "limits.max_items"),
    ("init_task,ffffffff/K | ::head -n 3", "limits.max_items"),
    ("init_task,ffffffff/+", "limits.max_items"),         # neither reads nor prints
    ("init_task,ffffffff/0X", "limits.max_items"),        # nor does a count of 0
    ("::walk task | ::print task_struct", "limits.max_lines"),
])
def test_a_long_command_stops_at_its_limit(line: str, limit: str) -> None:
    session, err = _session()
    start = time.monotonic()
    assert session.run_line(line) is False
    assert time.monotonic() - start < 3
    assert err.getvalue() == f"pmdb: stopped after {Config(SMALL).get(limit)} " \
        f"{_WHAT[line] if line in _WHAT else _WHAT[limit]}" \
        f": the limit {limit} (raise it in pmdb.toml)\n"


def test_read_limit_counts_bytes_read() -> None:
    session, err = _session(**{"limits.max_lines": 10**9, "limits.max_read_bytes": 4096})
    out = io.StringIO()
    session.stdout = out
    assert session.run_line("init_task,ffffffff/J") is False
    assert "limits.max_read_bytes" in err.getvalue()
    assert len([w for w in out.getvalue().split() if not w.endswith(":")]) == 4096 // 8


def test_within_the_limits_nothing_changes() -> None:
    out = io.StringIO()
    session, err = _session(out)
    assert session.run_line("init_task,10/K")
    assert err.getvalue() == "" and len(out.getvalue().splitlines()) == 5


class _InterruptingStream(io.StringIO):
    """A terminal whose user presses ^C after some output has arrived."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.writes = after, 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes > self.after:
            raise KeyboardInterrupt
        return super().write(text)


def test_format_output_streams_and_interrupt_stops_it() -> None:
    """Lines reach the stream while the command runs (not once at its end), and ^C in the
    middle is one 'interrupted' line; the session goes on."""
    stream = _InterruptingStream(after=3)
    session, err = _session(stream, **{"limits.max_lines": 10**9, "limits.max_read_bytes": 10**12})
    assert session.run_line("init_task,ffffffff/Kn") is False
    assert err.getvalue() == "pmdb: interrupted\n"
    assert len(stream.getvalue().splitlines()) == 4     # "init_task:" came with the first row
    stream.after = 10**9
    assert session.run_line("init_task/K")


def test_sigint_stops_an_endless_command() -> None:
    """A real ^C (SIGINT) to pmdb running a format with the limits raised out of reach."""
    folder, name = DUMPS[0]
    path = str(folder / name)
    target_for(folder, name)           # skips without the fixture
    cfg = ROOT / "tests" / "data" / "limits-unbounded.toml"
    proc = subprocess.Popen([sys.executable, "-m", "pmdb", "--config", str(cfg), path, "-e",
                             "::echo started; init_task,ffffffff/n; init_task,ffffffff/+; 1=D"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PMDB_CACHE_DIR": os.environ.get("PMDB_CACHE_DIR", ""),
                                 "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == "started"   # started, however long that took under load
    drain = threading.Thread(target=proc.stdout.read, daemon=True)
    drain.start()
    time.sleep(0.5)                    # the endless format is running ...
    proc.send_signal(signal.SIGINT)
    first = proc.stderr.readline()     # ... is stopped, and the next one starts
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=20)
    err = first + rest
    assert err.count("pmdb: interrupted") == 2, err


def test_rows_written_in_batches_stop_at_the_exact_line() -> None:
    """::ps writes its rows in batches; a limit inside a batch still lets every line that
    fits go out (the header and 19 rows under a limit of 20), then stops the command."""
    out = io.StringIO()
    session, err = _session(out, **{"limits.max_lines": 20})
    assert session.run_line("::ps") is False
    lines = out.getvalue().splitlines()
    assert len(lines) == 20 and lines[0].split()[:2] == ["PID", "PPID"]
    full, _ = _session()
    whole = io.StringIO()
    Session(full.target, config=Config(SMALL), stdout=whole, stderr=io.StringIO()).run_line("::ps")
    assert lines == whole.getvalue().splitlines()[:20]
    assert "limits.max_lines" in err.getvalue()
