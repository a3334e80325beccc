"""Laying out tables and fields as text lines of styled spans, and showing them with rich.

One layout serves both text renderings: piped, the spans' text is written as
it is; on a terminal (or with output.color = "always") each span is colored by
the type of its cell through a rich Console. The colored text is the plain text
character for character, so what the REPL shows is what a pipe would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from pmdb.output import Column, Flag, Hex, Symbol, Unreadable, cell_text

if TYPE_CHECKING:         # rich loads only when output is colored (~25 ms of every start)
    from rich.console import Console
    from rich.text import Text

Span = tuple[str, str]          # (text, rich style; "" for none)
HEADER_STYLE = "bold"


def cell_style(value: Any) -> str:
    """The color of a cell, by its type."""
    if isinstance(value, Unreadable):
        return "bold red"
    if isinstance(value, Symbol):
        return "green"
    if isinstance(value, Hex):
        return "cyan"
    if isinstance(value, Flag):
        return "bold yellow"
    return ""


def _pad(text: str, width: int, align: str) -> str:
    return text.rjust(width) if align == ">" else text.ljust(width)


def _shown(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> tuple[list[Column], list[list[Any]]]:
    """The columns shown as text, and each row's cells under them ("" where a row is short)."""
    shown = [i for i, c in enumerate(columns) if c.text]
    return [columns[i] for i in shown], [[r[i] if i < len(r) else "" for i in shown] for r in rows]


def _widths(cols: Sequence[Column], texts: Sequence[Sequence[str]], *, header: bool | str, fit: bool) -> list[int]:
    """Each column's width: its own, or (fitted) its widest cell or title."""
    widths = [c.width for c in cols]
    if fit:
        for r in texts:
            widths = [max(w, len(t)) for w, t in zip(widths, r, strict=True)]
        if header is True:
            widths = [max(w, len(c.title)) for w, c in zip(widths, cols, strict=True)]
    return widths


def table_lines(columns: Sequence[Column], rows: Sequence[Sequence[Any]], *,
                header: bool | str, fit: bool) -> list[list[Span]]:
    """The text lines of a table (only the columns shown as text)."""
    cols, cells = _shown(columns, rows)
    texts = [[cell_text(c) for c in r] for r in cells]
    widths = _widths(cols, texts, header=header, fit=fit)
    out: list[list[Span]] = []
    if isinstance(header, str):
        out.append([(header, HEADER_STYLE)])
    elif header:
        out.append(_row([c.title for c in cols], [HEADER_STYLE] * len(cols), cols, widths, fit))
    for r, t in zip(cells, texts, strict=True):
        out.append(_row(t, [cell_style(c) for c in r], cols, widths, fit))
    return out


def table_text(columns: Sequence[Column], rows: Sequence[Sequence[Any]], *,
               header: bool | str, fit: bool) -> list[str]:
    """table_lines' text alone, for output that is not colored: the same characters,
    without a style and a span per cell (10,000 rows of ::ps were mostly that)."""
    cols, cells = _shown(columns, rows)
    texts = [list(map(cell_text, r)) for r in cells]
    widths = _widths(cols, texts, header=header, fit=fit)
    last = len(cols) - 1
    # one format string for the whole line: each cell padded to its width on its side
    template = "".join(
        _literal("" if i == 0 else c.gap)
        + ("{}" if fit and i == last and c.align != ">" else f"{{:{'>' if c.align == '>' else '<'}{widths[i]}}}")
        + _literal(c.suffix) for i, c in enumerate(cols))

    def line(cells: Sequence[str]) -> str:
        joined = template.format(*cells)
        return joined.rstrip() if fit else joined

    out: list[str] = []
    if isinstance(header, str):
        out.append(header)
    elif header:
        out.append(line([c.title for c in cols]))
    out.extend(map(line, texts))
    return out


def _literal(text: str) -> str:
    """text as a literal part of a str.format template."""
    return text.replace("{", "{{").replace("}", "}}")


def _row(texts: Sequence[str], styles: Sequence[str], cols: Sequence[Column], widths: Sequence[int],
         fit: bool) -> list[Span]:
    """One line; a fitted table leaves its last column unpadded and no trailing blanks."""
    spans: list[Span] = []
    last = len(cols) - 1
    for i, (text, style, col) in enumerate(zip(texts, styles, cols, strict=True)):
        if i:
            spans.append((col.gap, ""))
        unpadded = fit and i == last and col.align != ">"
        spans.append((text if unpadded else _pad(text, widths[i], col.align), style))
        if col.suffix:
            spans.append((col.suffix, ""))
    return _rstrip(spans) if fit else spans


def _rstrip(spans: list[Span]) -> list[Span]:
    while spans and not spans[-1][0].rstrip():
        spans.pop()
    if spans:
        text, style = spans[-1]
        spans[-1] = (text.rstrip(), style)
    return spans


def field_lines(pairs: Sequence[tuple[str, Any]], *, right: int | None) -> list[list[Span]]:
    """``key: value`` lines: keys right-aligned to at least ``right`` columns, else the
    colon after the key and the values aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    out: list[list[Span]] = []
    for key, value in pairs:
        label = f"{key:>{max(width, right)}}: " if right is not None else f"{key + ':':<{width + 1}} "
        # the key stays unstyled: "KEY: value" reads (and greps) the same colored or not
        out.append([(label, ""), (cell_text(value), cell_style(value))])
    return out


def console_for(stream: IO[str]) -> Console:
    """A rich Console that colors and never wraps or re-highlights pmdb's text."""
    from rich.console import Console

    return Console(file=stream, force_terminal=True, color_system="standard", width=1 << 16,
                   soft_wrap=True, highlight=False, markup=False, emoji=False)


def styled(spans: Sequence[Span]) -> Text:
    from rich.text import Text

    text = Text()
    for part, style in spans:
        text.append(part, style=style or None)
    return text
