"""Source lines of code addresses, from the DWARF line tables of the file that holds them.

Only scripts ask for these (``prog.stack(...)[i].source``), so nothing here runs at open:
the first question about an object file reads its ``.debug_aranges`` to find the unit,
then decodes that one unit's line program (a kernel's 170 MB of DWARF is never read
whole). A file without line tables, or an address no unit covers, has no source line.
"""

from __future__ import annotations

import bisect
import os
import weakref
from typing import Any

from pmdb.errors import PmdbError

# object file (ObjectFile, or a kernel's LinuxKernel) -> its line tables
_TABLES: weakref.WeakKeyDictionary[Any, _LineTables] = weakref.WeakKeyDictionary()


class _LineTables:
    """One ELF file's DWARF line tables, read unit by unit as addresses need them."""

    def __init__(self, dwarf: Any) -> None:
        self.dwarf = dwarf
        self._aranges: Any = None
        self._units: dict[int, tuple[list[int], list[tuple[str, int]]]] = {}

    def line(self, addr: int) -> tuple[str, int] | None:
        unit = self._unit_offset(addr)
        if unit is None:
            return None
        if unit not in self._units:
            self._units[unit] = _rows(self.dwarf, self.dwarf.get_CU_at(unit))
        starts, places = self._units[unit]
        i = bisect.bisect_right(starts, addr) - 1
        return places[i] if i >= 0 and places[i][1] > 0 else None

    def _unit_offset(self, addr: int) -> int | None:
        if self._aranges is None:
            self._aranges = self.dwarf.get_aranges() or False
        if self._aranges:
            return self._aranges.cu_offset_at_addr(addr)
        for cu in self.dwarf.iter_CUs():      # no aranges (small user programs): each unit's range
            top = cu.get_top_DIE()
            low, high = top.attributes.get("DW_AT_low_pc"), top.attributes.get("DW_AT_high_pc")
            if low is None or high is None:
                continue
            end = high.value if high.form == "DW_FORM_addr" else low.value + high.value
            if low.value <= addr < end:
                return int(cu.cu_offset)
        return None


def _rows(dwarf: Any, cu: Any) -> tuple[list[int], list[tuple[str, int]]]:
    """(sorted row addresses, (file, line) at each) of one unit's line program; an
    end_sequence row closes its range with line 0 (no source)."""
    program = dwarf.line_program_for_CU(cu)
    if program is None:
        return [], []
    rows: list[tuple[int, tuple[str, int]]] = []
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        place = ("", 0) if state.end_sequence else (_file_name(program, state.file), state.line)
        rows.append((state.address, place))
    rows.sort(key=lambda r: r[0])
    return [a for a, _ in rows], [p for _, p in rows]


def _file_name(program: Any, index: int) -> str:
    """A line-program file index as a path: its directory joined on when it names one."""
    header = program.header
    version = header["version"]
    files = header["file_entry"]
    entry = files[index] if version >= 5 else files[index - 1] if 0 < index <= len(files) else None
    if entry is None:
        return "?"
    name = _text(entry.name)
    dirs = header["include_directory"]
    d = entry.dir_index
    if version >= 5 and d == 0:
        return name          # the unit's own directory: the build tree, as drgn shows it
    if 0 < d <= len(dirs) or (version >= 5 and d < len(dirs)):
        return os.path.join(_text(dirs[d if version >= 5 else d - 1]), name)
    return name


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def source_line(target: Any, pc: int) -> tuple[str, int] | None:
    """(file, line) of the code at pc in the target's debug info, or None when unknown."""
    try:
        found = _tables_for(target, pc)
        if found is None:
            return None
        tables, addr = found
        return tables.line(addr)
    except (PmdbError, Exception):   # damaged DWARF (pyelftools has its own errors): no line
        return None


def _tables_for(target: Any, pc: int) -> tuple[_LineTables, int] | None:
    """The line tables that cover pc, and pc as that file's own (unrelocated) address."""
    model = target.os
    object_at = getattr(getattr(model, "objects", None), "object_at", None)
    if object_at is not None:                   # a user core: the library or executable at pc
        obj = object_at(pc)
        if obj is None:
            return None
        if obj not in _TABLES:
            elf = obj.elf
            if not elf.has_dwarf_info():
                return None
            _TABLES[obj] = _LineTables(elf.get_dwarf_info())
        return _TABLES[obj], pc - obj.bias
    km = getattr(model, "km", None)
    path = getattr(km, "vmlinux", None)
    if km is None or not path:
        return None
    sym = target.symbols.resolve(pc)
    if sym is not None and sym[0].module is not None:
        return None                             # a module's code: its .ko is not read here
    if model not in _TABLES:
        from pmdb.types.debugfile import DebugFile

        _TABLES[model] = _LineTables(DebugFile(path).dwarf())
    return _TABLES[model], pc - km.info.kernel_offset
