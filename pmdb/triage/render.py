"""Triage results for people and programs: a rich table of ranked crashes (plain text when
piped) with the failed dumps below it, and one JSON document."""

from __future__ import annotations

import json
import os
import time
from typing import IO, Any

from pmdb.triage.group import Crash
from pmdb.triage.record import Record

TOP_SHOWN = 3          # signature frames the table shows


def when(seconds: float | None) -> str:
    """A dump time as UTC, the dumps' own clock."""
    if seconds is None:
        return "?"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return "?"


def shown_path(path: str) -> str:
    """A path as short as it reads well: relative below the current directory, ~ for home."""
    rel = os.path.relpath(path)
    if not rel.startswith(".."):
        return rel
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def _short(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" +{len(items) - n}" if len(items) > n else "")


def print_table(crashes: list[Crash], errors: list[Record], stream: IO[str], *, color: bool | None = None) -> None:
    """The ranked crashes (a family's members one under the other, ``≈`` marking the ones
    that only share top frames), then one row per dump that failed."""
    from rich.console import Console
    from rich.table import Table

    tty = stream.isatty()
    console = Console(file=stream, force_terminal=color, no_color=color is False, width=None if tty else 250)
    from rich import box as boxes

    box = boxes.HEAVY_HEAD if tty else None       # piped: plain aligned columns
    table = Table(title=f"{len(crashes)} distinct crash{'es' if len(crashes) != 1 else ''}",
                  title_justify="left", show_lines=False, box=box)
    for name in ("#", "COUNT", "CRASH", "SIGNATURE", "KERNELS", "HOSTS", "FIRST", "LAST", "EXAMPLE"):
        table.add_column(name, overflow="fold")
    seen_family: set[int] = set()
    for c in crashes:
        mark = "≈" if c.family in seen_family else ""
        seen_family.add(c.family)
        frames = " < ".join(c.signature[:TOP_SHOWN]) + (" ..." if len(c.signature) > TOP_SHOWN else "")
        table.add_row(f"{mark}{c.rank}", str(c.count), c.crash_line or c.function or "?", frames or "(no stack)",
                      _short(c.kernels), _short(c.hosts), when(c.first_seen), when(c.last_seen),
                      shown_path(c.representative) if c.representative else "")
    console.print(table)
    if errors:
        failed = Table(title=f"{len(errors)} dump{'s' if len(errors) != 1 else ''} could not be triaged",
                       title_justify="left", box=box)
        failed.add_column("DUMP", overflow="fold")
        failed.add_column("ERROR", overflow="fold")
        for rec in errors:
            failed.add_row(shown_path(rec["path"]), rec.get("error") or "")
        console.print(failed)


def document(records: list[Record], crashes: list[Crash], errors: list[Record]) -> dict[str, Any]:
    """What --json prints: every crash (ranked), every record, and the failed ones."""
    return {"crashes": [c.to_dict() for c in crashes], "records": records,
            "errors": [{"path": r["path"], "error": r.get("error")} for r in errors]}


def write_json(doc: dict[str, Any], stream: IO[str]) -> None:
    json.dump(doc, stream, indent=1, sort_keys=False)
    stream.write("\n")
