"""A kernel module's DWARF (its .ko, or Debian's -dbg copy), relocated to where it was loaded.

A .ko is relocatable (ET_REL): its DWARF names code by section-relative relocations, and even
its .debug_str offsets are relocations. The file is small (kilobytes to a few MB), so a copy
of it is relocated whole, with each allocated section at the address the kernel gave it (the
module's sect_attrs) and each debug section at 0, into an anonymous mapping; types, names
and source lines are then read from that copy as from a vmlinux.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
from collections.abc import Iterable
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.die import DIE
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from pmdb.errors import FormatError
from pmdb.types.debugfile import _DWARF_SECTIONS, Window, build_id_note
from pmdb.types.dwarf import DwarfTypes, _Index
from pmdb.types.dwarf_source import SourceLines, pyelftools_unit_info

_FOREIGN = (ELFError, DWARFError, OSError, ValueError, KeyError, IndexError, struct.error, AssertionError)
_SHF_ALLOC = 0x2
_MAX_KO = 512 << 20
# machine -> relocation type -> bytes written (the absolute ones DWARF uses)
_ABSOLUTE = {"EM_X86_64": {1: 8, 10: 4, 11: 4}, "EM_AARCH64": {257: 8, 258: 4}}


class ModuleDwarf:
    """One module's relocated debug file: its sections, types and source lines."""

    def __init__(self, path: str, sections: dict[str, int]) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_KO + 1)
        except OSError as err:
            raise FormatError(f"{path}: {err.strerror or err}") from None
        if len(raw) > _MAX_KO:
            raise FormatError(f"{path}: larger than a module can be")
        try:
            elf = ELFFile(io.BytesIO(raw))
            if elf.header["e_type"] != "ET_REL":
                raise FormatError(f"{os.path.basename(path)}: not a kernel module (.ko): it is not relocatable")
            self.little = elf.little_endian
            self.table = {s.name: (s["sh_offset"], s["sh_size"]) for s in elf.iter_sections()
                          if s["sh_type"] != "SHT_NOBITS" and s["sh_offset"] + s["sh_size"] <= len(raw)}
            if ".debug_info" not in self.table:
                raise FormatError(f"{os.path.basename(path)}: no DWARF (.debug_info): not a debug file")
            self.build_id = _build_id(elf, raw)
            data = bytearray(raw)
            self.loaded = _relocate(elf, data, sections)
        except _FOREIGN as err:
            raise FormatError(f"{os.path.basename(path)}: not a readable module ({err})") from None
        self.mm = mmap.mmap(-1, max(len(data), 1))
        self.mm.write(bytes(data))
        self.dwarf = DWARFInfo(
            config=DwarfConfig(little_endian=self.little, default_address_size=elf.elfclass // 8,
                               machine_arch=elf.get_machine_arch()),
            eh_frame_sec=None, gnu_debugaltlink_sec=None, **self._descriptors())
        self.lines = SourceLines(self.mm, self.table, pyelftools_unit_info(self.dwarf), little=self.little)
        self.types = DwarfTypes(index=_ModuleIndex(self.dwarf))

    def _descriptors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for short in _DWARF_SECTIONS:
            where = self.table.get(f".debug_{short}")
            out[f"debug_{short}_sec"] = None if where is None else DebugSectionDescriptor(
                Window(self.mm, *where), f".debug_{short}", None, where[1], 0)  # type: ignore[arg-type]
        return out

    def line_at(self, addr: int) -> tuple[str, int] | None:
        return self.lines.line_at(addr)

    def relocated_elf(self) -> ELFFile:
        """The relocated copy as an ELF file (its .debug_aranges and .debug_frame name the
        loaded addresses), for frame parameters."""
        return ELFFile(io.BytesIO(self.mm[:]))

    def holds(self, addr: int) -> bool:
        """Whether ``addr`` is in one of the module's loaded sections."""
        return any(lo <= addr < lo + n for lo, n in self.loaded)


def _build_id(elf: ELFFile, raw: bytes) -> str:
    sec = elf.get_section_by_name(".note.gnu.build-id")
    if sec is None:
        return ""
    found = build_id_note(raw[sec["sh_offset"]:sec["sh_offset"] + sec["sh_size"]], "<" if elf.little_endian else ">")
    return found.hex() if found else ""


def _relocate(elf: ELFFile, data: bytearray, placed: dict[str, int]) -> list[tuple[int, int]]:
    """Apply the RELA relocations of the debug sections in ``data``, allocated sections at
    their ``placed`` addresses; returns the (address, size) of each placed code/data section."""
    sections = list(elf.iter_sections())
    base = [placed.get(s.name, 0) if s["sh_flags"] & _SHF_ALLOC else 0 for s in sections]
    loaded = [(placed[s.name], s["sh_size"]) for s in sections
              if s["sh_flags"] & _SHF_ALLOC and s.name in placed and s["sh_size"]]
    kinds = _ABSOLUTE.get(elf["e_machine"])
    end = "<" if elf.little_endian else ">"
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        raise FormatError("no .symtab: its relocations cannot be applied")
    values = [(sym["st_value"], sym["st_shndx"]) for sym in symtab.iter_symbols()]
    for rel in sections:
        if rel["sh_type"] != "SHT_RELA" or not isinstance(rel, RelocationSection):
            continue
        target = sections[rel["sh_info"]]
        if not target.name.startswith(".debug_"):
            continue
        if kinds is None:
            raise FormatError(f"relocations of {elf['e_machine']} modules are not supported")
        t_off, t_size = target["sh_offset"], target["sh_size"]
        for r in rel.iter_relocations():
            kind, at = r["r_info_type"], r["r_offset"]
            if kind == 0:
                continue
            size = kinds.get(kind)
            if size is None:
                raise FormatError(f"relocation type {kind} in {target.name} is not supported")
            if at + size > t_size:
                raise FormatError(f"a relocation of {target.name} lies outside it")
            value, shndx = values[r["r_info_sym"]]
            if isinstance(shndx, int) and 0 < shndx < len(base):
                value += base[shndx]
            value = (value + r["r_addend"]) & ((1 << (8 * size)) - 1)
            struct.pack_into(end + ("Q" if size == 8 else "I"), data, t_off + at, value)
    return loaded


class _ModuleIndex:
    """dwarf.DieIndex over every unit's top level: a module has few units."""

    def __init__(self, dwarf: DWARFInfo) -> None:
        self.dwarf = dwarf
        self._index: _Index | None = None

    def _get(self) -> _Index:
        if self._index is None:
            index = _Index()
            try:
                for cu in self.dwarf.iter_CUs():
                    for die in cu.get_top_DIE().iter_children():
                        index.add(die)
            except _FOREIGN as err:
                raise FormatError(f"bad module DWARF: {err}") from None
            self._index = index
        return self._index

    def type_die(self, name: str, kind: str | None) -> DIE | None:
        return self._get().type_die(name, kind)

    def variable_die(self, name: str) -> DIE | None:
        return self._get().variable_die(name)

    def type_names(self) -> Iterable[str]:
        return self._get().type_names()

    def variable_names(self) -> Iterable[str]:
        return self._get().variable_names()
