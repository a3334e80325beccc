"""The real REPL, driven through a pseudo-terminal as a user would drive it.

pmdb runs as a child process on a pty (xterm, 80x24), so prompt_toolkit draws
its real prompt. A command's output is what prompt_toolkit lets through between
leaving the prompt (bracketed paste off, ESC[?2004l) and drawing the next one
(ESC[?2004h); escape sequences are stripped from it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pmdb.demo import user_demo_path
from tests.conftest import USER_CORES, need_fixture

PROMPT = "pmdb> "
PROMPT_MARK = PROMPT.rstrip().encode()    # the trailing space is drawn as a cursor movement
LEAVE, ENTER = b"\x1b[?2004l", b"\x1b[?2004h"
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]|[\x07\x08]")


def clean(data: bytes) -> str:
    return _ANSI.sub(b"", data).decode(errors="replace").replace("\r", "")


class Pty:
    """pmdb on a pseudo-terminal."""

    def __init__(self, args: Sequence[str], *, rows: int = 24, cols: int = 80, rc: bool = False) -> None:
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS=str(cols),
                   LINES=str(rows), LESS="", PAGER="")
        env.pop("PMDB_CONFIG", None)
        if not rc:                  # the developer's own ~/.pmdbrc stays out of the tests
            env["PMDB_NORC"] = "1"
        pid, fd = pty.fork()
        if pid == 0:  # the child: its stdin is the pty; give it a size before pmdb starts
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(sys.executable, [sys.executable, "-m", "pmdb", *args], env)
        self.pid, self.fd = pid, fd
        self.data = b""
        self.pos = 0            # what expect() has consumed
        self.status: int | None = None

    def read(self, timeout: float) -> bool:
        """Read what is there within timeout; False at EOF."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:         # EIO: the child closed the pty
            return False
        self.data += chunk
        return bool(chunk)

    def expect(self, marker: bytes, timeout: float = 30) -> bytes:
        """Everything up to marker (consumed), or fail after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.data.find(marker, self.pos)
            if at >= 0:
                got, self.pos = self.data[self.pos:at], at + len(marker)
                return got
            if time.monotonic() > deadline or not self.read(0.2):
                raise AssertionError(f"no {marker!r} within {timeout}s; got {clean(self.data[self.pos:])!r}")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def prompt(self) -> None:
        self.expect(ENTER)
        self.expect(PROMPT_MARK)

    def command(self, line: str, *, keys: str = "\r") -> list[str]:
        """Type a line and Enter at the prompt; the lines it printed, prompt back again."""
        self.send(line + keys)
        self.expect(LEAVE)
        out = self.expect(ENTER)
        self.expect(PROMPT_MARK)
        return [ln for ln in clean(out).split("\n") if ln.strip()]

    def finish(self, timeout: float = 30) -> int:
        """Wait for the child to exit; its exit status."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError("pmdb did not exit")
            self.read(0.1)
        while self.read(0.1):   # drain what is left
            pass
        os.close(self.fd)
        return self.status

    def all_text(self) -> str:
        return clean(self.data)


def words(text: str) -> str:
    """Text with runs of blanks as one space: a pager may draw blanks as cursor movements."""
    return " ".join(text.split())


def config_file(tmp_path: Path, *, pager: bool = False) -> Path:
    cfg = tmp_path / "pmdb.toml"
    cfg.write_text(f'[repl]\nhistory_file = "{tmp_path / "history"}"\nprompt = "{PROMPT}"\n'
                   f"pager = {'true' if pager else 'false'}\n")
    return cfg


def cores() -> Iterator[str]:
    yield "demo"
    yield "hashcrash-x86_64-O2"


def core_args(name: str) -> list[str]:
    if name == "demo":
        return [user_demo_path()]     # the small user core (--demo opens the kernel dump)
    return [str(need_fixture(USER_CORES / f"{name}.core"))]


def plain_output(args: Sequence[str], line: str) -> list[str]:
    """What the same command prints without a terminal (the REPL must print the same)."""
    r = subprocess.run([sys.executable, "-m", "pmdb", "--norc", *args, "-e", line], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stdout.split("\n") if ln.strip()]


@pytest.fixture
def repl(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pty]:
    p = Pty(["-q", "--config", str(config_file(tmp_path)), *core_args(request.param)])
    p.prompt()
    yield p
    if p.status is None:
        os.kill(p.pid, signal.SIGKILL)
        p.finish()


BAD_INPUT = [
    # (line, what the one line must say)
    ("0/K", r"^pmdb: .*\b0x0\b"),                      # an unmapped address
    ("nosuch_symbol_xyz", r"^pmdb: .*nosuch_symbol_xyz"),
    ("::print struct nosuch", r"^pmdb: .*nosuch"),
    ("::nosuchdcmd", r"^pmdb: .*nosuchdcmd"),
    ("::walk nosuchwalker", r"^pmdb: .*nosuchwalker"),
]


@pytest.mark.parametrize("repl", list(cores()), indirect=True)
def test_bad_input_gives_one_line_and_the_prompt_returns(repl: Pty) -> None:
    for line, pattern in BAD_INPUT:
        out = repl.command(line)
        assert len(out) == 1, (line, out)
        assert re.search(pattern, out[0]), (line, out)
        assert "internal error" not in out[0] and "Traceback" not in out[0], (line, out)


@pytest.mark.parametrize("repl", list(cores()), indirect=True)
def test_malformed_expression_gets_a_caret_under_the_bad_character(repl: Pty) -> None:
    out = repl.command("1+")
    assert len(out) == 1, out
    # the caret stands under the end of "1+" as it is on the screen after the prompt
    assert out[0].index("^") == len(PROMPT) + len("1+"), out
    out = repl.command("1 + )")
    assert out[0].index("^") == len(PROMPT) + len("1 + "), out


@pytest.mark.parametrize("repl", list(cores()), indirect=True)
def test_good_command_after_bad_ones_prints_what_it_prints_without_a_terminal(
        repl: Pty, request: pytest.FixtureRequest) -> None:
    for line, _ in BAD_INPUT:
        repl.command(line)
    assert repl.command("::threads") == plain_output(core_args(request.node.callspec.params["repl"]),
                                                    "::threads")


@pytest.mark.parametrize("repl", ["demo"], indirect=True)
def test_ctrl_c_at_the_prompt_abandons_the_line(repl: Pty) -> None:
    repl.send("::nosuchdcmd")
    repl.send("\x03")
    repl.expect(LEAVE)
    assert clean(repl.expect(ENTER)).strip() == ""      # nothing ran
    repl.expect(PROMPT_MARK)
    assert repl.command("::threads") == plain_output(core_args("demo"), "::threads")


@pytest.mark.parametrize("repl", ["demo"], indirect=True)
def test_ctrl_c_interrupts_a_running_command(repl: Pty) -> None:
    repl.send("::threads ! sleep 60\r")
    repl.expect(LEAVE)
    time.sleep(1.0)
    started = time.monotonic()
    repl.send("\x03")
    out = clean(repl.expect(ENTER, timeout=20))
    repl.expect(PROMPT_MARK)
    assert time.monotonic() - started < 20
    # the terminal itself echoes the ^C
    assert [ln.removeprefix("^C") for ln in out.split("\n") if ln.strip()] == ["pmdb: interrupted"], out
    assert repl.command("::threads") == plain_output(core_args("demo"), "::threads")


@pytest.mark.parametrize("repl", ["demo"], indirect=True)
def test_bare_newline_repeats_the_last_command(repl: Pty) -> None:
    first = repl.command("::threads")
    assert repl.command("") == first


@pytest.mark.parametrize("repl", ["demo"], indirect=True)
def test_tab_completes_a_dcmd(repl: Pty) -> None:
    repl.send("::mappi\t")   # the one dcmd starting so
    time.sleep(1.0)     # completion runs asynchronously: let it land before Enter
    assert repl.command("", keys="\r") == plain_output(core_args("demo"), "::mappings")


@pytest.mark.parametrize("repl", ["demo"], indirect=True)
def test_quit_and_history(repl: Pty, tmp_path: Path) -> None:
    repl.command("::threads")
    repl.command("::nosuchdcmd")
    repl.send("$q\r")
    assert repl.finish() == 0
    history = (tmp_path / "history").read_text()
    typed = [ln[1:] for ln in history.splitlines() if ln.startswith("+")]
    assert typed == ["::threads", "::nosuchdcmd", "$q"]


@pytest.mark.parametrize("repl", ["demo"], indirect=True)
def test_ctrl_d_quits(repl: Pty) -> None:
    repl.send("\x04")
    assert repl.finish() == 0


def test_long_output_goes_through_the_pager(tmp_path: Path) -> None:
    if shutil.which("less") is None:
        pytest.skip("less is not installed")
    expected = plain_output(core_args("demo"), "::mappings")
    rows = 10
    assert len(expected) > rows
    p = Pty(["-q", "--config", str(config_file(tmp_path, pager=True)), *core_args("demo")], rows=rows)
    p.prompt()
    p.send("::mappings\r")
    p.expect(LEAVE)
    p.expect(b":", timeout=30)        # less's prompt: the rest waits for a key
    screen = words(clean(p.data))
    assert words(expected[1]) in screen
    assert words(expected[-1]) not in screen
    p.send("q")
    p.expect(ENTER)
    p.expect(PROMPT_MARK)
    p.send("$q\r")
    assert p.finish() == 0


def test_short_output_is_not_paged(tmp_path: Path) -> None:
    p = Pty(["-q", "--config", str(config_file(tmp_path, pager=True)), *core_args("demo")])
    p.prompt()
    assert p.command("::threads") == plain_output(core_args("demo"), "::threads")
    p.send("$q\r")
    assert p.finish() == 0


def test_banner_at_the_terminal(tmp_path: Path) -> None:
    p = Pty(["--config", str(config_file(tmp_path)), "--demo"])
    p.prompt()
    shown = p.all_text()
    for first_command in ("::status", "::ps", "::msgbuf", "$c", "::walk task | ::print task_struct pid comm"):
        assert first_command in shown
    p.send("\x04")
    assert p.finish() == 0


def test_missing_file_gives_one_line_and_status_two(tmp_path: Path) -> None:
    p = Pty(["--config", str(config_file(tmp_path)), str(tmp_path / "nosuch.core")])
    assert p.finish() == 2
    lines = [ln for ln in p.all_text().split("\n") if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pmdb: ") and "nosuch.core" in lines[0], lines


def test_truncated_core_gives_one_line_and_status_two(tmp_path: Path) -> None:
    data = Path(user_demo_path()).read_bytes()
    core = tmp_path / "truncated.core"
    core.write_bytes(data[: len(data) // 2])
    p = Pty(["--config", str(config_file(tmp_path)), str(core)])
    assert p.finish() == 2
    lines = [ln for ln in p.all_text().split("\n") if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pmdb: ") and "truncated" in lines[0], lines
