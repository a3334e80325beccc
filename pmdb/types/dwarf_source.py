"""Source lines of one debug file: address -> (file, line), one compile unit at a time.

A distribution vmlinux has ~17 MB of line programs in ~3000 units; a backtrace needs a
handful. ``.debug_aranges`` says which unit holds an address; only that unit's program is
decoded (dwarf_lines), kept in memory, and stored in pmdb's cache keyed by the file's
build-id and content plus the unit, so the next session loads it instead (checked: its
offset, and rows inside the unit's ranges). A file without aranges has no source lines.
"""

from __future__ import annotations

import bisect
import contextlib
import marshal
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pmdb.cache import Cache, content_key
from pmdb.errors import FormatError, PmdbError
from pmdb.types.dwarf_lines import LineTable, Strings, decode, initial_length

FORMAT = 1                  # bump when a cached table's layout changes
_FOREIGN = (Exception,)     # pyelftools raises many kinds on bad DWARF: each becomes FormatError

# the unit's top DIE: (DW_AT_stmt_list, DW_AT_comp_dir) or None when it has no line program
UnitInfo = Callable[[int], tuple[int, str] | None]


class SourceLines:
    """See the module docstring. ``bias`` is added to the file's addresses to give the
    running ones (the kernel's KASLR offset; 0 for a relocated module)."""

    def __init__(self, data: Any, sections: dict[str, tuple[int, int]], unit_info: UnitInfo, *,
                 little: bool = True, bias: int = 0, cache: Cache | None = None,
                 cache_label: str = "") -> None:
        self.data = data
        self.sections = sections
        self.unit_info = unit_info
        self.little = little
        self.bias = bias
        self._cache = cache
        self._label = cache_label          # build-id and content key; "" = not cached
        self._ranges: tuple[list[int], list[int], list[int]] | None = None
        self._tables: dict[int, LineTable | None] = {}
        self.decoded = 0                   # units decoded (not loaded from the cache): for figures

    def line_at(self, addr: int) -> tuple[str, int] | None:
        """(file, line) of the running address ``addr``, or None when no unit covers it."""
        at = addr - self.bias
        unit = self.unit_of(at)
        if unit is None:
            return None
        if unit not in self._tables:
            self._tables[unit] = self._table(unit)
        table = self._tables[unit]
        return table.lookup(at) if table is not None else None

    def unit_of(self, at: int) -> int | None:
        """The .debug_info offset of the unit whose aranges hold the file address ``at``."""
        starts, ends, units = self.ranges()
        i = bisect.bisect_right(starts, at) - 1
        while i >= 0 and starts[i] <= at:
            if at < ends[i]:
                return units[i]
            if ends[i] <= at and i > 0 and ends[i - 1] <= at:
                break                     # sorted by start; ranges rarely nest
            i -= 1
        return None

    def ranges(self) -> tuple[list[int], list[int], list[int]]:
        if self._ranges is None:
            where = self.sections.get(".debug_aranges")
            self._ranges = aranges(self.data, *where, little=self.little) if where else ([], [], [])
        return self._ranges

    def _table(self, unit: int) -> LineTable | None:
        stem = self._stem(unit)
        if stem is not None and self._cache is not None:
            found = self._cache.find(stem)
            if found is not None:
                try:
                    return self._check(unit, _load(found.read_bytes()))
                except (OSError, PmdbError):
                    with contextlib.suppress(OSError):
                        found.unlink()        # damaged or stale: decode again
        info = self.unit_info(unit)
        if info is None:
            return None
        stmt_list, comp_dir = info
        where = self.sections.get(".debug_line")
        if where is None or stmt_list >= where[1]:
            raise FormatError(f"unit at {unit:#x}: line program offset past .debug_line")
        strings = Strings(self.sections.get(".debug_line_str", (0, 0)), self.sections.get(".debug_str", (0, 0)))
        table = decode(self.data, where[0] + stmt_list, where[0] + where[1], strings,
                       comp_dir=comp_dir, little=self.little)
        self.decoded += 1
        table = self._check(unit, table)
        if stem is not None and self._cache is not None:
            self._cache.store(stem, marshal.dumps((FORMAT, unit, table.dump())))
        return table

    def _check(self, unit: int, loaded: tuple[int, LineTable] | LineTable) -> LineTable:
        """The table, if its unit is ``unit`` and some row lies in the unit's ranges."""
        if isinstance(loaded, tuple):
            got, table = loaded
            if got != unit:
                raise FormatError("cached line table of another unit")
        else:
            table = loaded
        starts, ends, units = self.ranges()
        mine = [(s, e) for s, e, u in zip(starts, ends, units, strict=True) if u == unit]
        if table.addrs and mine and not any(s <= a < e for a in table.addrs[:64] for s, e in mine):
            raise FormatError(f"line table of unit {unit:#x} lies outside its address ranges")
        return table

    def _stem(self, unit: int) -> Path | None:
        if self._cache is None or not self._label:
            return None
        return self._cache.path("dwarf", f"lines{FORMAT}-{self._label}", f"{unit:x}")


def cache_label(path: str, build_id: str) -> str:
    """How a file's cached tables are named: its build-id and content key ("" if unreadable)."""
    try:
        return f"{build_id[:40] or 'nobuildid'}-{content_key(path)}"
    except OSError:
        return ""


def _load(data: bytes) -> tuple[int, LineTable]:
    try:
        fmt, unit, dumped = marshal.loads(data)
    except (EOFError, ValueError, TypeError) as err:
        raise FormatError(f"unreadable line table ({err})") from None
    if fmt != FORMAT or not isinstance(unit, int):
        raise FormatError("malformed line table")
    return unit, LineTable.load(dumped)


def aranges(data: Any, base: int, size: int, *, little: bool = True) -> tuple[list[int], list[int], list[int]]:
    """.debug_aranges as three lists sorted by start: starts, ends, unit offsets."""
    e = "<" if little else ">"
    rows: list[tuple[int, int, int]] = []
    pos, end = base, base + size
    try:
        while pos + 12 <= end:
            length, osize, p = initial_length(data, pos, e)
            stop = p + length
            if stop > end or length < 4:
                raise FormatError(f".debug_aranges set at {pos - base:#x} runs past its section")
            unit = struct.unpack_from(e + ("I" if osize == 4 else "Q"), data, p + 2)[0]
            asize = data[p + 2 + osize]
            fmt = e + {4: "II", 8: "QQ"}.get(asize, "")
            if len(fmt) != 3:
                raise FormatError(f".debug_aranges address size {asize}")
            q = p + 2 + osize + 2
            q += -(q - pos) % (2 * asize)            # tuples are aligned to twice their size
            while q + 2 * asize <= stop:
                start, n = struct.unpack_from(fmt, data, q)
                q += 2 * asize
                if start == 0 and n == 0:
                    break
                if n:
                    rows.append((start, start + n, unit))
            pos = stop
    except (IndexError, struct.error):
        raise FormatError(".debug_aranges is truncated") from None
    rows.sort()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def pyelftools_unit_info(dwarf: Any) -> UnitInfo:
    """unit_info over a pyelftools DWARFInfo: parses only the unit's top DIE."""

    def info(unit: int) -> tuple[int, str] | None:
        try:
            top = dwarf.get_CU_at(unit).get_top_DIE()
        except _FOREIGN as err:
            raise FormatError(f"bad DWARF unit at {unit:#x}: {err}") from None
        stmt = top.attributes.get("DW_AT_stmt_list")
        if stmt is None:
            return None
        comp = top.attributes.get("DW_AT_comp_dir")
        comp_dir = comp.value.decode("utf-8", "replace") if comp is not None and isinstance(comp.value, bytes) else ""
        return int(stmt.value), comp_dir

    return info
