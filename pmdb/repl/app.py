"""The interactive loop: read a line with prompt_toolkit, run it, show its output.

A command's output (and its error lines, so the two stay in order) is collected
first and then printed, or shown through a pager when it would not fit on the
screen. ^C at the prompt abandons the line; ^C while a command runs stops it
and the prompt comes back. ^D or $q ends the session.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from typing import IO

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from pmdb.errors import ParseError, PmdbError
from pmdb.language.parser import parse
from pmdb.repl.completer import SessionCompleter
from pmdb.repl.highlight import PromptLexer, prompt_style
from pmdb.repl.keys import key_bindings
from pmdb.session import QuitRequest, Session


class _Capture(io.StringIO):
    """A command's output, which still reports whether the real output is a terminal,
    so commands colour it as they would on the terminal itself."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def run_repl(session: Session, *, banner: str = "", stdout: IO[str] | None = None) -> None:
    """Read-eval-print until ^D or $q."""
    out = stdout or sys.stdout
    if banner:
        out.write(banner + "\n")
        out.flush()
    prompt = make_prompt(session)
    text_prompt = session.config.get("repl.prompt")
    while True:
        try:
            text = prompt.prompt(text_prompt)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        try:
            if not _parse_error_shown(session, text, len(text_prompt), out):
                run_one(session, text, out)
        except QuitRequest:
            break


def make_prompt(session: Session) -> PromptSession[str]:
    return PromptSession(
        history=_history(session),
        lexer=PromptLexer(),
        completer=SessionCompleter(session),
        complete_while_typing=False,
        auto_suggest=AutoSuggestFromHistory(),
        key_bindings=key_bindings(),
        enable_history_search=True,
        style=prompt_style(),
        include_default_pygments_style=False,
    )


def _history(session: Session) -> History:
    """The history file from the configuration; in memory when it cannot be written."""
    path = os.path.expanduser(session.config.get("repl.history_file"))
    if not path:
        return InMemoryHistory()
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        session.stderr.write(f"pmdb: history not saved: {path}: {err.strerror}\n")
        return InMemoryHistory()
    return FileHistory(path)


def _parse_error_shown(session: Session, text: str, indent: int, out: IO[str]) -> bool:
    """A line that does not parse gets one caret line under the bad character of the
    line still on screen above it (instead of the line repeated with a caret)."""
    try:
        spelled = session.crash_spelling(text)  # as the session reads it: p init_task.pid
    except PmdbError:           # a crash word pmdb lacks: the session says so when it runs
        return False
    try:
        parse(spelled)
        return False
    except ParseError as err:
        column = indent + err.offset
        if spelled != text or "\n" in text or column >= shutil.get_terminal_size().columns:
            return False        # the caret would not land under the character: let the session show it
        out.write(f"{' ' * column}^ {err.message}\n")
        out.flush()
        session.failed = True
        return True


def run_one(session: Session, text: str, out: IO[str]) -> bool:
    """Run one line (a bare newline repeats the last one); show what it printed."""
    capture = _Capture(out.isatty())
    saved_stderr = session.stderr
    session.stderr = capture
    try:
        if text.strip():
            ok = session.run_line(text, out=capture)
        else:
            ok = session.repeat_last(out=capture)
    except KeyboardInterrupt:   # between stages, outside the session's own guard
        capture.write("pmdb: interrupted\n")
        ok = False
    finally:
        session.stderr = saved_stderr
        show(capture.getvalue(), out, page=bool(session.config.get("repl.pager")))
    return ok


def show(text: str, out: IO[str], *, page: bool) -> None:
    """Print text, through a pager when it is longer than the terminal."""
    if not text:
        return
    if page and out.isatty() and text.count("\n") >= _rows(out) - 1:
        _page(text, out)
        return
    out.write(text)
    out.flush()


def _rows(out: IO[str]) -> int:
    try:
        return os.get_terminal_size(out.fileno()).lines
    except (OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size().lines


def _page(text: str, out: IO[str]) -> None:
    """less -R -F -X (colours kept, text left on screen); pydoc's built-in pager without less."""
    out.flush()
    less = shutil.which("less")
    if less is None:
        import pydoc  # ~15 ms of import, only where there is no less

        pydoc.ttypager(text)
        return
    # ^C belongs to less while it runs; it must not also interrupt us (a handler, not
    # SIG_IGN, since an ignored signal would stay ignored in less after exec)
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: None)
    try:
        subprocess.run([less, "-R", "-F", "-X"], input=text, text=True, check=False)
    except OSError:
        out.write(text)
    finally:
        signal.signal(signal.SIGINT, previous)
