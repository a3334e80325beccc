"""Output: what dcmds write through ``ctx.out``.

Plain text when piped or not a TTY, rich tables on a TTY, JSON records with
--json. Cells may be typed hints (Hex, Symbol, Unreadable) so that one bad
pointer marks one cell instead of killing a table.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any


@dataclass(frozen=True)
class Hex:
    value: int
    width: int = 0

    def __str__(self) -> str:
        return f"{self.value:0{self.width}x}" if self.width else f"{self.value:x}"


@dataclass(frozen=True)
class Symbol:
    addr: int
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Unreadable:
    addr: int | None = None

    def __str__(self) -> str:
        return "<unreadable>" if self.addr is None else f"<unreadable {self.addr:#x}>"


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def cell_json(value: Any) -> Any:
    if isinstance(value, Hex | Symbol):
        return value.addr if isinstance(value, Symbol) else value.value
    if isinstance(value, Unreadable):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


class Output:
    """A sink for one command's output."""

    def __init__(self, stream: IO[str] | None = None, *, json_mode: bool = False,
                 color: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.json_mode = json_mode
        self.color = self.stream.isatty() if color is None and hasattr(self.stream, "isatty") else bool(color)
        self.records: list[dict[str, Any]] = []

    # -- text ---------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Raw text, exactly as given."""
        if self.json_mode:
            self.records.append({"text": text})
            return
        self.stream.write(text)

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def error(self, text: str) -> None:
        """A one-line diagnostic that belongs to this output (e.g. a cell's reason)."""
        if self.json_mode:
            self.records.append({"error": text})
        else:
            self.stream.write(f"pmdb: {text}\n")

    # -- structured -----------------------------------------------------------------

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]],
              align: str = "", header: bool = True) -> None:
        """Columns padded to the widest cell; ``align`` per column: 'r' or 'l' (default l)."""
        rows = [list(r) for r in rows]
        if self.json_mode:
            keys = [h.strip().lower() or f"col{i}" for i, h in enumerate(headers)]
            for r in rows:
                self.records.append({k: cell_json(v) for k, v in zip(keys, r, strict=False)})
            return
        texts = [[cell_text(c) for c in r] for r in rows]
        widths = [len(h) for h in headers]
        for r in texts:
            for i, c in enumerate(r):
                if i < len(widths):
                    widths[i] = max(widths[i], len(c))
        buf = io.StringIO()

        def emit(cells: Sequence[str]) -> None:
            parts = []
            for i, c in enumerate(cells):
                last = i == len(cells) - 1
                right = i < len(align) and align[i] == "r"
                parts.append(c.rjust(widths[i]) if right else (c if last else c.ljust(widths[i])))
            buf.write(" ".join(parts).rstrip() + "\n")

        if header and headers:
            emit(list(headers))
        for r in texts:
            emit(r)
        self.write(buf.getvalue())

    def record(self, **fields: Any) -> None:
        """One JSON record (in text mode: ``key: value`` lines)."""
        if self.json_mode:
            self.records.append({k: cell_json(v) for k, v in fields.items()})
        else:
            width = max((len(k) for k in fields), default=0)
            for k, v in fields.items():
                self.line(f"{k.upper().rjust(width)}: {cell_text(v)}")

    def flush_json(self) -> None:
        if self.json_mode and self.records:
            self.stream.write(json.dumps(self.records, indent=1) + "\n")
            self.records = []
