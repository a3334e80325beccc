"""Function names by address from DWARF, for frames named as gdb names them.

gdb names a frame after the DWARF function containing its pc when it has one, else after
its minimal (ELF) symbols; for a library whose separate debug file has DWARF these differ:
libc's read() is the subprogram ``__GI___libc_read`` (its DW_AT_linkage_name), an alias of
``read`` in the symbol table. Nothing is read until an address is asked for: the address
ranges (.debug_aranges) say which unit holds it, and only that unit's DIEs are parsed (a
few ms each; indexing all of libc's takes 12 s).
"""

from __future__ import annotations

import bisect
import io
import struct
from collections.abc import Iterator
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
from elftools.dwarf.ranges import BaseAddressEntry
from elftools.elf.elffile import ELFFile

FOREIGN = (ELFError, DWARFError, OSError, ValueError, KeyError, IndexError, struct.error,
            AssertionError, TypeError, AttributeError)
_NAME_HOPS = 4           # abstract_origin / specification links followed to find a name


class UnitRanges:
    """``unit_at(link_addr)``: the .debug_info offset of the unit whose code holds an address,
    from .debug_aranges, read on first use. ``missing`` when the file has no DWARF to ask."""

    def __init__(self, elf: ELFFile) -> None:
        self._elf = elf
        self._aranges: tuple[list[int], list[tuple[int, int, int]]] | None = None
        self.missing = False

    def unit_at(self, addr: int) -> int | None:
        if self._aranges is None:
            aranges = self._elf.get_section_by_name(".debug_aranges")
            if self._elf.get_section_by_name(".debug_info") is None or aranges is None:
                self.missing = True
                return None
            self._aranges = parse_aranges(aranges.data(), self._elf.little_endian)
        starts, ranges = self._aranges
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or not addr < ranges[i][1]:
            return None             # data, or code without DWARF: .debug_info stays unread
        return ranges[i][2]


class FunctionNames:
    """``function_at(link_addr)``: the DWARF function whose low_pc..high_pc holds it."""

    def __init__(self, elf: ELFFile) -> None:
        self._elf = elf
        self._dwarf: Any = None
        self._ranges = UnitRanges(elf)
        self._broken = False
        self._units: dict[int, tuple[list[int], list[tuple[int, int, str, int]]]] = {}

    def function_at(self, addr: int) -> tuple[int, str] | None:
        """(entry pc, name) of the function holding addr (its DW_AT_linkage_name, else
        DW_AT_name, through its abstract origin); None without DWARF for addr or when the
        DWARF cannot be read."""
        if self._broken:
            return None
        try:
            unit = self._unit_of(addr)
        except FOREIGN:
            self._broken = True         # one damaged file is one miss, not a stream of errors
            return None
        if unit is None:
            return None
        starts, funcs = unit
        top = bisect.bisect_right(starts, addr) - 1
        # the last that holds addr: of equal ranges the last in DIE order (gdb's pick: clone3,
        # not __clone3, for three labels of one assembler function); a few back for nesting
        for i in range(top, max(top - 4, -1), -1):
            lo, hi, name, entry = funcs[i]
            if lo <= addr < hi:
                return entry, name
        return None

    def _unit_of(self, addr: int) -> tuple[list[int], list[tuple[int, int, str, int]]] | None:
        offset = self._ranges.unit_at(addr)
        if offset is None:
            self._broken = self._ranges.missing
            return None
        if offset not in self._units:
            if self._dwarf is None:
                self._dwarf = partial_dwarf(self._elf)
            self._units[offset] = _functions(self._dwarf.get_CU_at(offset))
        return self._units[offset]


# what naming needs; get_dwarf_info() would also inflate libc's line and location tables
_NEEDED = ("info", "abbrev", "str", "line_str", "ranges", "rnglists", "addr", "str_offsets")
_ALL = ("info", "aranges", "abbrev", "frame", "str", "loc", "ranges", "line", "pubtypes",
        "pubnames", "addr", "str_offsets", "line_str", "loclists", "rnglists", "sup", "types")


def partial_dwarf(elf: ELFFile, locations: bool = False) -> DWARFInfo:
    """A DWARFInfo over only the sections function names need, and with ``locations`` the
    location lists parameters need (each inflated once when SHF_COMPRESSED: pyelftools'
    Section.data() does it)."""
    sections: dict[str, DebugSectionDescriptor | None] = {}
    needed = _NEEDED + ("loc", "loclists") if locations else _NEEDED
    for short in _ALL:
        sec = elf.get_section_by_name(f".debug_{short}") if short in needed else None
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            sections[f"debug_{short}_sec"] = None
            continue
        data = sec.data()
        sections[f"debug_{short}_sec"] = DebugSectionDescriptor(
            io.BytesIO(data), sec.name, sec["sh_offset"], len(data), sec["sh_addr"])
    return DWARFInfo(config=DwarfConfig(little_endian=elf.little_endian,
                                        default_address_size=elf.elfclass // 8,
                                        machine_arch=elf.get_machine_arch()),
                     eh_frame_sec=None, gnu_debugaltlink_sec=None, **sections)  # type: ignore[arg-type]


def parse_aranges(data: bytes, little: bool) -> tuple[list[int], list[tuple[int, int, int]]]:
    """(starts, [(start, end, unit offset)]) of .debug_aranges, by start (DWARF 6.1.2); read
    here because pyelftools' construct parsing of libc's took 0.4 s."""
    end_ = "<" if little else ">"
    out: list[tuple[int, int, int]] = []
    pos = 0
    while pos + 4 <= len(data):
        (length,) = struct.unpack_from(end_ + "I", data, pos)
        offset_size, head = (8, 12) if length == 0xFFFFFFFF else (4, 4)
        if length == 0xFFFFFFFF:
            (length,) = struct.unpack_from(end_ + "Q", data, pos + 4)
        unit_end = pos + head + length
        if length == 0 or unit_end > len(data):
            break
        at = pos + head + 2                                  # past the version
        (cu,) = struct.unpack_from(end_ + ("Q" if offset_size == 8 else "I"), data, at)
        at += offset_size
        asize = data[at]
        if asize not in (4, 8):
            break
        at += 2
        at += -(at - pos) % (2 * asize)                      # tuples align to twice their size
        pair = struct.Struct(end_ + ("QQ" if asize == 8 else "II"))
        while at + pair.size <= unit_end:
            start, size = pair.unpack_from(data, at)
            at += pair.size
            if start == 0 and size == 0:
                break
            out.append((start, start + size, cu))
        pos = unit_end
    out.sort()
    return [r[0] for r in out], out


def _functions(cu: Any) -> tuple[list[int], list[tuple[int, int, str, int]]]:
    """(starts, [(low, high, name, entry)]) of each pc range of a unit's top-level subprograms,
    by start (see subprogram_parts)."""
    out: list[tuple[int, int, str, int]] = []
    names: dict[int, str | None] = {}
    for lo, hi, die, entry in subprogram_parts(cu):
        if die.offset not in names:
            names[die.offset] = function_name(die)
        name = names[die.offset]
        if name:
            out.append((lo, hi, name, entry))
    out.sort(key=lambda f: f[0])          # stable: equal starts keep their DIE order
    return [f[0] for f in out], out


def subprogram_parts(cu: Any) -> Iterator[tuple[int, int, Any, int]]:
    """(low, high, DIE, entry) of each pc range of a unit's top-level subprograms, in DIE
    order; a function split in parts (DW_AT_ranges: foo and foo.cold) has a row per part,
    each with the function's entry (its first range's start, as gdb takes it). Subtrees are
    skipped by DW_AT_sibling: a fifth of the DIEs."""
    top = cu.get_top_DIE()
    base_attr = top.attributes.get("DW_AT_low_pc")
    base = base_attr.value if base_attr is not None else 0
    for die in top.iter_children():
        if die.tag != "DW_TAG_subprogram":
            continue
        attrs = die.attributes
        low, high = attrs.get("DW_AT_low_pc"), attrs.get("DW_AT_high_pc")
        if low is not None and high is not None:
            parts = [(low.value, high.value if high.form == "DW_FORM_addr" else low.value + high.value)]
        elif "DW_AT_ranges" in attrs:
            parts = range_parts(cu, attrs["DW_AT_ranges"], base)
        else:
            continue
        for lo, hi in parts:
            yield lo, hi, die, parts[0][0]


def range_parts(cu: Any, attr: Any, base: int) -> list[tuple[int, int]]:
    """The [low, high) parts of a DW_AT_ranges (an offset into .debug_ranges/.debug_rnglists;
    the indexed form of split DWARF is not read)."""
    if attr.form not in ("DW_FORM_sec_offset", "DW_FORM_data4", "DW_FORM_data8"):
        return []
    lists = cu.dwarfinfo.range_lists()
    if lists is None:
        return []
    out = []
    for entry in lists.get_range_list_at_offset(attr.value, cu=cu):
        if isinstance(entry, BaseAddressEntry):
            base = entry.base_address
        elif entry.is_absolute:
            out.append((entry.begin_offset, entry.end_offset))
        else:
            out.append((base + entry.begin_offset, base + entry.end_offset))
    return [(lo, hi) for lo, hi in out if lo < hi]


def function_name(die: Any) -> str | None:
    """A function's DW_AT_linkage_name, else DW_AT_name, through its abstract origin or
    specification (the name gdb shows)."""
    for _ in range(_NAME_HOPS):
        attrs = die.attributes
        for key in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"):
            if key in attrs:
                value = attrs[key].value
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        link = next((k for k in ("DW_AT_abstract_origin", "DW_AT_specification") if k in attrs), None)
        if link is None:
            return None
        die = die.get_DIE_from_attribute(link)
    return None
