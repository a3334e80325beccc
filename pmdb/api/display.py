"""Rich (terminal) and HTML (notebook) forms of the API's values; rich is imported only here."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

# ::print's text: a member's name before " = ", and numbers
_NAME = re.compile(r"^(\s*)(\w+)( = )", re.M)
_NUMBER = re.compile(r"\b(0x[0-9a-f]+|0t\d+|\d+)\b")


def rich_print_text(text: str, title: str = "") -> Any:
    """::print's text with member names and numbers styled (default-foreground friendly:
    bold and the basic ANSI colours, readable on dark and light terminals)."""
    from rich.text import Text

    out = Text()
    if title:
        out.append(title + "\n", style="italic")
    body = Text(text)
    for m in _NAME.finditer(text):
        body.stylize("bold", m.start(2), m.end(2))
    for m in _NUMBER.finditer(text):
        body.stylize("cyan", m.start(), m.end())
    out.append_text(body)
    return out


def rich_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> Any:
    """A rich Table of rows (dicts), columns in first-seen key order."""
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", header_style="bold")
    keys = _keys(rows)
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*(_cell(r.get(k)) for k in keys))
    return table


def html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of rows (dicts), for notebooks."""
    keys = _keys(rows)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(k)))}</td>" for k in keys) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
