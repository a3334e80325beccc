"""DWARF types of a process's objects, through pyelftools, loaded lazily.

Opening a core parses no DWARF at all. The first type or variable query
indexes the names of each compile unit's top-level DIEs (not their subtrees);
a Type is built from its DIE on demand, and struct members, enumerators and
array dimensions are filled in by ``loader`` callbacks on first access, so a
self-referencing ``struct node`` costs nothing until it is printed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from pmdb.errors import FormatError
from pmdb.types.model import VOID, Member, Type


class DwarfObject(Protocol):
    """What this module needs of an object file (pmdb.symbols.objfile.ObjectFile has it);
    a protocol, so that types do not import symbols, which import types."""

    @property
    def name(self) -> str: ...

    @property
    def is_main(self) -> bool: ...

    @property
    def elf(self) -> ELFFile: ...

_FOREIGN = (ELFError, DWARFError, OSError, ValueError, KeyError, IndexError, struct.error, AssertionError)

_TAGGED = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union",
           "DW_TAG_enumeration_type": "enum", "DW_TAG_class_type": "struct"}
_PLAIN = ("DW_TAG_typedef", "DW_TAG_base_type")
_QUALS = {"DW_TAG_const_type": "const", "DW_TAG_volatile_type": "volatile",
          "DW_TAG_restrict_type": "restrict", "DW_TAG_atomic_type": "_Atomic"}
_POINTERS = ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type")
# DW_ATE_* encodings of base types
_ATE_BOOL, _ATE_FLOATS, _ATE_SIGNED = 0x02, (0x03, 0x04, 0x09), (0x05, 0x06, 0x0D)
_DW_OP_plus_uconst = 0x23


def _name(die: DIE) -> str:
    attr = die.attributes.get("DW_AT_name")
    if attr is None:
        return ""
    value = attr.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int_attr(die: DIE, name: str, default: int | None = None) -> int | None:
    attr = die.attributes.get(name)
    if attr is None or not isinstance(attr.value, int):
        return default
    return attr.value


def _is_declaration(die: DIE) -> bool:
    return bool(die.attributes.get("DW_AT_declaration") and die.attributes["DW_AT_declaration"].value)


class DieIndex(Protocol):
    """Where the DIE naming a type or variable is: a walk of every unit's top level (small
    objects), or a prebuilt index (a kernel's vmlinux: pmdb.types.dwarf_kernel)."""

    def type_die(self, name: str, kind: str | None) -> DIE | None:
        """The DIE defining a type: kind "struct"/"union"/"enum", or None for a typedef or
        base type."""

    def variable_die(self, name: str) -> DIE | None: ...

    def type_names(self) -> Iterable[str]: ...

    def variable_names(self) -> Iterable[str]: ...


class _Index:
    """Top-level names of every CU: tagged types, plain types (typedefs, base types), variables."""

    def __init__(self) -> None:
        self.tagged: dict[tuple[str, str], list[DIE]] = {}
        self.plain: dict[str, list[DIE]] = {}
        self.variables: dict[str, list[DIE]] = {}

    def add(self, die: DIE) -> None:
        name = _name(die)
        if not name:
            return
        tag = die.tag
        if tag in _TAGGED:
            self.tagged.setdefault((_TAGGED[tag], name), []).append(die)
        elif tag in _PLAIN:
            self.plain.setdefault(name, []).append(die)
        elif tag == "DW_TAG_variable" and "DW_AT_type" in die.attributes:
            self.variables.setdefault(name, []).append(die)

    def type_die(self, name: str, kind: str | None) -> DIE | None:
        return _best(self.tagged.get((kind, name))) if kind else _best(self.plain.get(name))

    def variable_die(self, name: str) -> DIE | None:
        return _best(self.variables.get(name))

    def type_names(self) -> Iterable[str]:
        yield from self.plain
        for kind, name in self.tagged:
            yield f"{kind} {name}"

    def variable_names(self) -> Iterable[str]:
        return self.variables.keys()


def _best(dies: list[DIE] | None) -> DIE | None:
    """A complete definition over a forward declaration."""
    if not dies:
        return None
    return next((d for d in dies if not _is_declaration(d)), dies[0])


class DwarfTypes:
    """A TypeSource over the DWARF of several objects (main executable first), or over one
    file's prebuilt ``index``."""

    def __init__(self, objects: Sequence[DwarfObject] = (), index: DieIndex | None = None) -> None:
        self._objects = sorted(objects, key=lambda o: not o.is_main)
        self._index: DieIndex | None = index
        self._built: dict[tuple[int, int], Type] = {}
        self.parsed_cus = 0          # how many CUs were indexed: opening must leave this at 0
        self.warnings: list[str] = []

    def close(self) -> None:
        """The index's close, when it has one (a kernel's keeps a scan cut short)."""
        closer = getattr(self._index, "close", None)
        if closer is not None:
            closer()

    # -- TypeSource ------------------------------------------------------------------

    def find_type(self, name: str, kind: str | None = None) -> Type | None:
        die = self._ensure_index().type_die(name, kind)
        return self._type(die) if die is not None else None

    def type_names(self) -> Iterable[str]:
        return self._ensure_index().type_names()

    def variable_type(self, name: str) -> Type | None:
        die = self._ensure_index().variable_die(name)
        if die is None:
            return None
        try:
            return self._ref(die)
        except _FOREIGN as err:
            raise FormatError(f"bad DWARF for variable {name}: {err}") from None

    def variable_names(self) -> Iterable[str]:
        return self._ensure_index().variable_names()

    # -- indexing --------------------------------------------------------------------

    def _ensure_index(self) -> DieIndex:
        if self._index is None:
            index = _Index()
            for obj in self._objects:
                try:
                    for die in self._top_dies(obj):
                        index.add(die)
                except (*_FOREIGN, FormatError) as err:
                    self.warnings.append(f"{obj.name}: DWARF not usable ({err})")
            self._index = index
        return self._index

    def _top_dies(self, obj: DwarfObject) -> Iterator[DIE]:
        elf = obj.elf
        # has_dwarf_info() is also true for .eh_frame alone; only .debug_info holds types
        if elf.get_section_by_name(".debug_info") is None and elf.get_section_by_name(".zdebug_info") is None:
            return
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        for cu in dwarf.iter_CUs():
            self.parsed_cus += 1
            yield from cu.get_top_DIE().iter_children()

    # -- building types ---------------------------------------------------------------

    def _ref(self, die: DIE) -> Type:
        """The type DW_AT_type of die names; void when it has none."""
        if "DW_AT_type" not in die.attributes:
            return VOID
        return self._type(die.get_DIE_from_attribute("DW_AT_type"))

    def _type(self, die: DIE) -> Type:
        key = (id(die.cu.dwarfinfo), die.offset)
        hit = self._built.get(key)
        if hit is None:
            try:
                hit = self._make(die)
            except _FOREIGN as err:
                raise FormatError(f"bad DWARF type at DIE {die.offset:#x}: {err}") from None
            self._built[key] = hit
        return hit

    def _make(self, die: DIE) -> Type:
        tag, name = str(die.tag), _name(die)
        size = _int_attr(die, "DW_AT_byte_size", 0) or 0
        if tag == "DW_TAG_base_type":
            return _base_type(die, name, size)
        if tag in _POINTERS or tag == "DW_TAG_ptr_to_member_type":
            psize = size or die.cu["address_size"]
            return Type("pointer", "", psize, loader=lambda t: self._set_target(t, die))
        if tag == "DW_TAG_typedef":
            return Type("typedef", name, 0, loader=lambda t: self._set_target(t, die))
        if tag in _QUALS:
            return Type("qual", "", 0, qualifier=_QUALS[tag], loader=lambda t: self._set_target(t, die))
        if tag in _TAGGED:
            kind = _TAGGED[tag]
            loader = self._load_enum if kind == "enum" else self._load_members
            t = Type(kind, name, size, loader=lambda t: loader(t, die))
            if kind == "enum" and "DW_AT_type" in die.attributes:
                # values are read before enumerators are listed: know the sign now
                t.signed = self._ref(die).strip().signed
            return t
        if tag == "DW_TAG_array_type":
            return self._array(die)
        if tag == "DW_TAG_subroutine_type":
            return self._function(die)
        if tag == "DW_TAG_unspecified_type":
            return VOID
        return Type("int", name or tag.removeprefix("DW_TAG_"), size)

    def _set_target(self, t: Type, die: DIE) -> None:
        t.target = self._ref(die)
        if t.kind in ("typedef", "qual"):
            t.size = t.target.sizeof() if t.target is not None else 0

    def _load_members(self, t: Type, die: DIE) -> None:
        if _is_declaration(die) and t.name:
            full = self.find_type(t.name, t.kind)
            if full is not None and full is not t:
                t.size, t.members = full.size, full.members
                return
        members = []
        for child in die.iter_children():
            if child.tag == "DW_TAG_member":
                members.append(self._member(child, big_endian=not die.dwarfinfo.config.little_endian))
        t.members = members

    def _member(self, die: DIE, big_endian: bool) -> Member:
        mtype = self._ref(die)
        byte_off = _member_location(die)
        bit_size = _int_attr(die, "DW_AT_bit_size", 0) or 0
        data_bit = _int_attr(die, "DW_AT_data_bit_offset")
        if data_bit is not None:
            bit_off = data_bit
        elif bit_size and "DW_AT_bit_offset" in die.attributes:
            # DWARF 2/3: bits counted from the most significant bit of a storage unit
            unit = _int_attr(die, "DW_AT_byte_size") or mtype.sizeof()
            from_msb = _int_attr(die, "DW_AT_bit_offset", 0) or 0
            bit_off = byte_off * 8 + (from_msb if big_endian else unit * 8 - from_msb - bit_size)
        else:
            bit_off = byte_off * 8
        return Member(_name(die), mtype, bit_off, bit_size)

    def _load_enum(self, t: Type, die: DIE) -> None:
        signed = t.signed
        values = []
        for child in die.iter_children():
            if child.tag == "DW_TAG_enumerator":
                v = _int_attr(child, "DW_AT_const_value", 0) or 0
                if signed and t.size and v >= 1 << (t.size * 8 - 1):
                    v -= 1 << (t.size * 8)
                values.append((_name(child), v))
        if "DW_AT_type" not in die.attributes and any(v < 0 for _, v in values):
            t.signed = True   # DWARF before v3 names no underlying type
        t.enumerators = values

    def _array(self, die: DIE) -> Type:
        """A multi-dimensional DWARF array is nested arrays, outermost dimension first."""
        dims = []
        for child in die.iter_children():
            if child.tag == "DW_TAG_subrange_type":
                count = _int_attr(child, "DW_AT_count")
                if count is None:
                    upper = _int_attr(child, "DW_AT_upper_bound")
                    lower = _int_attr(child, "DW_AT_lower_bound", 0) or 0
                    count = None if upper is None else upper - lower + 1
                dims.append(count)
        elem = self._ref(die)
        t = elem
        for count in reversed(dims or [None]):
            t = Type("array", "", (count or 0) * t.sizeof(), count=count, _target=t)
        return t

    def _function(self, die: DIE) -> Type:
        params, variadic = [], False
        for child in die.iter_children():
            if child.tag == "DW_TAG_formal_parameter":
                params.append(self._ref(child))
            elif child.tag == "DW_TAG_unspecified_parameters":
                variadic = True
        ret = self._ref(die) if "DW_AT_type" in die.attributes else None
        return Type("func", "", 0, params=params, variadic=variadic, _target=ret)


def _base_type(die: DIE, name: str, size: int) -> Type:
    enc = _int_attr(die, "DW_AT_encoding", 0)
    if enc == _ATE_BOOL:
        return Type("bool", name, size)
    if enc in _ATE_FLOATS:
        return Type("float", name, size)
    return Type("int", name, size, signed=enc in _ATE_SIGNED)


def _member_location(die: DIE) -> int:
    attr = die.attributes.get("DW_AT_data_member_location")
    if attr is None:
        return 0
    value: Any = attr.value
    if isinstance(value, int):
        return value
    # DWARF 2 spells an offset as an expression: DW_OP_plus_uconst ULEB128
    if isinstance(value, list) and value and value[0] == _DW_OP_plus_uconst:
        result, shift = 0, 0
        for byte in value[1:]:
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return result
    return 0
