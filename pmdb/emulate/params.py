"""A function's parameters (name, byte size) from the DWARF of the object that holds it.

i386 passes arguments on the stack, so a ``uint64_t`` takes two words: placing
arguments needs each parameter's size. The flow view also names how many
arguments to show. pmdb's type registry indexes types and variables, not
functions, so the subprogram is found here, through the object's address ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmdb.target import Target

_STRIP = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
          "DW_TAG_atomic_type")


@dataclass(frozen=True)
class FuncInfo:
    params: list[tuple[str, int]]     # (name, byte size)
    ret_size: int                     # 0 for void


class FunctionParams:
    """The parameters of a target's functions, each looked up once (DWARF walks are slow).

    One per target, kept by whoever outlives a single call (::emulate keeps it per session)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._cache: dict[int, FuncInfo | None] = {}

    def __call__(self, addr: int) -> FuncInfo | None:
        """Parameters and result size of the function starting at addr; None without DWARF for it."""
        if addr not in self._cache:
            try:
                self._cache[addr] = _lookup(self.target, addr)
            except Exception:  # pyelftools on damaged DWARF: no parameter info, not a failure
                self._cache[addr] = None
        return self._cache[addr]


def _lookup(target: Target, addr: int) -> FuncInfo | None:
    objects = getattr(target.os, "objects", None)
    obj = objects.object_at(addr) if objects is not None and hasattr(objects, "object_at") else None
    if obj is None or not obj.elf.has_dwarf_info():
        return None
    dwarf = obj.elf.get_dwarf_info()
    pc = addr - obj.bias
    cu_offset = None
    aranges = dwarf.get_aranges()
    if aranges is not None:
        cu_offset = aranges.cu_offset_at_addr(pc)
    cus = [dwarf.get_CU_at(cu_offset)] if cu_offset is not None else dwarf.iter_CUs()
    for cu in cus:
        for die in cu.iter_DIEs():
            if die.tag == "DW_TAG_subprogram" and _low_pc(die) == pc:
                ptr = target.arch.ptr_size
                params = [(_name(p), _size(p, ptr)) for p in die.iter_children()
                          if p.tag == "DW_TAG_formal_parameter"]
                return FuncInfo(params, _size(die, ptr) if "DW_AT_type" in die.attributes else 0)
    return None


def _low_pc(die: Any) -> int | None:
    attr = die.attributes.get("DW_AT_low_pc")
    return attr.value if attr is not None else None


def _name(die: Any) -> str:
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode(errors="replace") if attr is not None else "?"


def _size(die: Any, ptr_size: int) -> int:
    """The parameter's byte size through typedefs and qualifiers (a pointer's is ptr_size)."""
    for _ in range(32):
        if "DW_AT_type" not in die.attributes:
            return ptr_size
        die = die.get_DIE_from_attribute("DW_AT_type")
        if die.tag in _STRIP:
            continue
        size = die.attributes.get("DW_AT_byte_size")
        return size.value if size is not None else ptr_size
    return ptr_size
