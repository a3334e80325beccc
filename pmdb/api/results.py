"""What ``Program.run`` returns: a command's rows and records as Python values.

A dcmd describes its output once, as tables of typed cells, records and free text
(pmdb.output). ``--json`` turns that into JSON; here the same description is kept as
Python: a row is a dict keyed by column, an address an ``Address`` (an int that shows
in hex), a ``sym+off`` cell a ``Symbol``, free text one ``str`` per line.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from pmdb.config import Config
from pmdb.output import Column, Dec, Flag, Hex, Indent, Output, json_key
from pmdb.session import Session
from pmdb.target import Target


class Address(int):
    """An int pmdb shows in hex (an address, a register): ``repr`` is ``0x...``."""

    def __repr__(self) -> str:
        return f"{int(self):#x}"

    __str__ = __repr__


class Row(dict[str, Any]):
    """One row or record of a command's output, keyed by column (``row["pid"]``), also
    readable as attributes (``row.pid``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def python_cell(value: Any) -> Any:
    """A typed output cell as a Python value (the tree of a record, recursively)."""
    if isinstance(value, Hex):
        return Address(value.value)
    if isinstance(value, Dec):
        return value.value
    if isinstance(value, Flag):
        return value.on
    if isinstance(value, Indent):
        return value.depth
    if isinstance(value, Mapping):
        return Row({str(k): python_cell(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [python_cell(v) for v in value]
    return value          # str, int, float, bool, None, Symbol, Unreadable


class Result(list[Any]):
    """A command line's output: ``Row`` dicts for rows and records, ``str`` for text lines.
    ``errors`` holds what went wrong (the session's one-line messages); ``failed`` whether
    any command of the line failed."""

    def __init__(self, items: Iterable[Any] = (), *, errors: Sequence[str] = (), failed: bool = False) -> None:
        super().__init__(items)
        self.errors = list(errors)
        self.failed = failed

    @property
    def rows(self) -> list[Row]:
        return [r for r in self if isinstance(r, Row)]

    @property
    def text(self) -> str:
        """The free-text lines, joined."""
        return "\n".join(r for r in self if isinstance(r, str))

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        from pmdb.api.display import rich_table

        parts: list[Any] = []
        rows = self.rows
        if rows:
            parts.append(rich_table([_flat(r) for r in rows]))
        if self.text:
            parts.append(Text(self.text))
        parts += [Text(f"pmdb: {e}", style="red") for e in self.errors]
        return Group(*parts)

    def _repr_html_(self) -> str:
        import html

        from pmdb.api.display import html_table

        out = [html_table([_flat(r) for r in self.rows])] if self.rows else []
        if self.text:
            out.append(f"<pre>{html.escape(self.text)}</pre>")
        out += [f"<pre style='color:red'>pmdb: {html.escape(e)}</pre>" for e in self.errors]
        return "<div>" + "".join(out) + "</div>"


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in row.items()}


class RecordingOutput(Output):
    """An Output in structured mode whose rows stay Python values, collected into ``sink``
    when the command ends instead of being written as JSON."""

    def __init__(self, stream: IO[str] | None = None, *, sink: list[Any], problems: list[str],
                 **kw: Any) -> None:
        kw["json_mode"] = True
        super().__init__(stream, **kw)
        self._sink = sink
        self._problems = problems

    def table(self, columns: Sequence[Column], rows: Iterable[Sequence[Any]], *,
              header: bool | str = True, fit: bool = True, text: Sequence[str] | None = None) -> None:
        rows = [list(r) for r in rows]
        self._count(len(rows))
        self.records += [Row({c.key: python_cell(v) for c, v in zip(columns, r, strict=False)}) for r in rows]

    def fields(self, pairs: Sequence[tuple[str, Any]], *, right: int | None = None) -> None:
        self._count(1)
        self.records.append(Row({json_key(k): python_cell(v) for k, v in pairs}))

    def record(self, data: Mapping[str, Any] | None = None, /, *, text: Sequence[str] | None = None,
               **fields: Any) -> None:
        self._count(1)
        self.records.append(python_cell({**(data or {}), **fields}))

    def write(self, text: str) -> None:
        lines = text.splitlines()
        self._count(len(lines))
        self.records += lines

    def flush(self) -> None:
        self._sink += self.records
        self._problems += self.errors
        self.records, self.errors = [], []


class RecordingSession(Session):
    """A Session whose pipelines record into ``collected`` (see RecordingOutput)."""

    def __init__(self, target: Target, config: Config) -> None:
        self._errors = io.StringIO()
        super().__init__(target, config=config, stdout=io.StringIO(), stderr=self._errors, json_mode=True)
        self.collected: list[Any] = []
        self.problems: list[str] = []      # what commands noted without failing (a damaged row)
        self.output_class = functools.partial(RecordingOutput, sink=self.collected, problems=self.problems)


def record_session(target: Target, config: Config) -> RecordingSession:
    return RecordingSession(target, config)


def run_recorded(session: Session, line: str) -> Result:
    """Run line in a RecordingSession; what it produced and the errors it reported."""
    assert isinstance(session, RecordingSession)
    session.collected.clear()
    session.problems.clear()
    errors = session._errors
    errors.seek(0)
    errors.truncate()
    session.failed = False
    session.run_line(line)
    failed = session.failed
    reported = [m.removeprefix("pmdb: ") for m in errors.getvalue().splitlines() if m.strip()]
    messages = list(dict.fromkeys(session.problems + reported))   # the stopping error is in both
    items = list(session.collected)
    session.collected.clear()
    return Result(items, errors=messages, failed=failed)
