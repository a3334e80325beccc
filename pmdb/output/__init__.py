"""Output: what dcmds write through ``ctx.out``, rendered once by this layer.

A dcmd describes what it found once: tables of typed cells (``Hex``, ``Dec``,
``Symbol``, ``Flag``, ``Indent``, ``Unreadable``, or plain text), records
(``fields``, ``record``) and free text (``line``). This module decides how
that looks: plain aligned text when piped, the same layout colored by cell
type through rich on a terminal (pmdb.output.render), and with --json one
JSON object per command (JSON Lines): ``{"command": "::ps", "records": [...]}``.
In JSON every value shown in hex (addresses, registers, offsets) is a
``"0x..."`` string; counts and pids are numbers; an unreadable cell is
``{"unreadable": "0x..."}`` so one bad pointer marks one cell, not a table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from pmdb.errors import LimitError


def hex_address(value: int) -> str:
    """The one JSON spelling of an address (and of every value pmdb shows in hex)."""
    return f"{value:#x}"


@dataclass(frozen=True)
class Hex:
    """A number shown in hex: an address, a register, an offset. ``width`` zero-pads it."""

    value: int
    width: int = 0
    prefix: bool = False          # text form starts with 0x

    def __str__(self) -> str:
        digits = f"{self.value:0{self.width}x}" if self.width else f"{self.value:x}"
        return "0x" + digits if self.prefix else digits


@dataclass(frozen=True)
class Dec:
    """A number shown in decimal; ``places`` > 0 for a fixed-point value such as a percentage."""

    value: int | float
    places: int = 0

    def __str__(self) -> str:
        return f"{self.value:.{self.places}f}" if self.places else str(self.value)


@dataclass(frozen=True)
class Symbol:
    """An address shown as ``sym+off``; JSON keeps both."""

    addr: int
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Unreadable:
    """A cell whose memory could not be read: the rest of its row and table still show."""

    addr: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        return "<unreadable>" if self.addr is None else f"<unreadable {self.addr:#x}>"


@dataclass(frozen=True)
class Flag:
    """A yes/no cell: ``mark`` when set, blanks otherwise; a JSON boolean."""

    on: bool
    mark: str = "*"

    def __str__(self) -> str:
        return self.mark if self.on else " " * len(self.mark)


@dataclass(frozen=True)
class Indent:
    """A tree's depth: indentation in text, a number in JSON."""

    depth: int
    unit: str = "    "

    def __str__(self) -> str:
        return self.unit * self.depth


@dataclass(frozen=True)
class Column:
    """One column: its JSON key, its title, and how plain text lays it out."""

    key: str
    title: str = ""
    align: str = "<"              # '<' left, '>' right
    width: int = 0                # the least width (fixed layouts: the exact width)
    gap: str = " "                # what separates it from the column before
    suffix: str = ""              # what follows each cell (crash's "[pid]")
    text: bool = True             # False: a JSON-only field (the text shows it otherwise)


# what a table cell may be: a typed hint, or plain text and numbers (decimal), None for "-"
# (a list of cells is one JSON array: a frame's arguments, a group's tasks)
Cell = Hex | Dec | Symbol | Unreadable | Flag | Indent | str | int | float | bool | None | list[Any]


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def cell_json(value: Any) -> Any:
    """A cell (or a tree of them: dicts and lists) as JSON values, addresses as hex strings."""
    if isinstance(value, Hex):
        return hex_address(value.value)
    if isinstance(value, Symbol):
        return {"address": hex_address(value.addr), "symbol": value.text}
    if isinstance(value, Unreadable):
        return {"unreadable": None if value.addr is None else hex_address(value.addr),
                **({"reason": value.reason} if value.reason else {})}
    if isinstance(value, Dec):
        return round(value.value, value.places) if value.places else value.value
    if isinstance(value, Flag):
        return value.on
    if isinstance(value, Indent):
        return value.depth
    if isinstance(value, Mapping):
        return {str(k): cell_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cell_json(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def json_key(name: str) -> str:
    """A field name as a JSON key: ``LOAD AVERAGE`` -> ``LOAD_AVERAGE``."""
    return name.strip().replace(" ", "_") or "value"


class Output:
    """The sink of one pipeline's output; see the module docstring."""

    def __init__(self, stream: IO[str] | None = None, *, json_mode: bool = False,
                 color: bool | None = None, command: str = "", max_lines: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.max_lines = max_lines      # limits.max_lines: lines (JSON: records) one command may write
        self.lines = 0
        self._json = json_mode
        isatty = getattr(self.stream, "isatty", None)
        self.color = bool(isatty()) if color is None and isatty is not None else bool(color)
        self.command = command
        self.records: list[Any] = []
        self.errors: list[str] = []
        self._console: Any = None

    @property
    def json_mode(self) -> bool:
        """Whether records become JSON (for the few text producers outside dcmds)."""
        return self._json

    # -- free text ------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Text exactly as given (in JSON: one ``{"text": ...}`` record per line)."""
        if self._json:
            lines = text.splitlines()
            self._count(len(lines))
            self.records += [{"text": t} for t in lines]
            return
        self._count(text.count("\n"))
        self.stream.write(text)

    def _count(self, n: int) -> None:
        """LimitError once more than max_lines lines (or JSON records) were written."""
        self.lines += n
        if self.max_lines is not None and self.lines > self.max_lines:
            raise LimitError("limits.max_lines", self.max_lines, "lines of output")

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def error(self, text: str) -> None:
        """A one-line diagnostic that belongs to this output (a damaged row, a stopped walk)."""
        self._count(1)
        if self._json:
            self.errors.append(text)
        else:
            self.stream.write(f"pmdb: {text}\n")

    # -- structured -----------------------------------------------------------------

    def table(self, columns: Sequence[Column], rows: Iterable[Sequence[Any]], *,
              header: bool | str = True, fit: bool = True, text: Sequence[str] | None = None) -> None:
        """Rows of cells under ``columns``. ``fit``: columns as wide as their widest cell
        (mdb's tables); otherwise each column exactly its width (crash's layouts), under
        ``header`` when it is the literal header line. ``text``: the plain form, for a
        layout columns cannot express; JSON still gets the rows."""
        rows = [list(r) for r in rows]
        if self._json:
            self._count(len(rows))
            self.records += [{c.key: cell_json(v) for c, v in zip(columns, r, strict=False)} for r in rows]
            return
        if text is not None:
            self._lines(text)
            return
        if not self.color:
            from pmdb.output.render import table_text

            self._lines(table_text(columns, rows, header=header, fit=fit))
            return
        from pmdb.output.render import table_lines

        self._spans(table_lines(columns, rows, header=header, fit=fit))

    def fields(self, pairs: Sequence[tuple[str, Any]], *, right: int | None = None) -> None:
        """One record of named values, as ``key: value`` lines: keys left-aligned with the
        colon after them (mdb), or right-aligned to at least ``right`` columns (crash's sys)."""
        if self._json:
            self._count(1)
            self.records.append({json_key(k): cell_json(v) for k, v in pairs})
            return
        from pmdb.output.render import field_lines

        self._spans(field_lines(pairs, right=right))

    def record(self, data: Mapping[str, Any] | None = None, /, *, text: Sequence[str] | None = None,
               **fields: Any) -> None:
        """One record (a tree of cells, dicts and lists) whose plain form is ``text``; without
        it, ``KEY: value`` lines. ``record(key=value, ...)`` is the same as ``record({...})``."""
        data = {**(data or {}), **fields}
        if self._json:
            self._count(1)
            self.records.append(cell_json(data))
        elif text is not None:
            self._lines(text)
        else:
            from pmdb.output.render import field_lines

            self._spans(field_lines([(k.upper(), v) for k, v in data.items()], right=0))

    def flush(self) -> None:
        """The end of a command: with --json, its one line of JSON."""
        if self._json:
            obj: dict[str, Any] = {"command": self.command, "records": self.records}
            if self.errors:
                obj["errors"] = self.errors
            self.stream.write(json.dumps(obj) + "\n")
            self.records, self.errors = [], []

    # -- rendering --------------------------------------------------------------------

    def _lines(self, lines: Iterable[str]) -> None:
        text = "".join(f"{t}\n" for t in lines)
        n = text.count("\n")
        if self.max_lines is not None and self.lines + n > self.max_lines and n > 1:
            for line in text.splitlines():      # what fits goes out before the limit stops it
                self._lines([line])
            return
        self._count(n)
        self.stream.write(text)

    def _spans(self, lines: list[list[tuple[str, str]]]) -> None:
        """Styled lines: plain text, or through rich when the output is colored."""
        self._count(len(lines))
        if not self.color:
            self.stream.write("".join("".join(t for t, _ in spans) + "\n" for spans in lines))
            return
        from pmdb.output.render import console_for, styled

        if self._console is None:
            self._console = console_for(self.stream)
        for spans in lines:
            self._console.print(styled(spans))
