"""A frame's parameters from DWARF: each name, and its value where the location allows.

gdb shows ``recurse (depth=4, tag=0x5555...)`` for a frame of code built with -g; mdb shows
what the ABI leaves on the stack. The DWARF subprogram holding the frame's pc lists its
parameters (DW_TAG_formal_parameter) with a location: a fixed expression (-O0: an offset
from the frame base, the CFA) or a location list (-O2: a register or stack slot per pc
range). The expression is evaluated against what the unwinder knows of that frame: every
register in the innermost frame, the callee-saved ones and the CFA in callers. What cannot
be known (a caller-saved register in a caller, an entry value, a piece) is None, gdb's
``<optimized out>``. Like FunctionNames, nothing is read until a frame asks: .debug_aranges
names the unit, and only that unit's DIEs are parsed.
"""

from __future__ import annotations

import bisect
import contextlib
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.locationlists import BaseAddressEntry, LocationEntry, LocationParser
from elftools.elf.elffile import ELFFile

from pmdb.arch import Arch
from pmdb.errors import FormatError, PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.dwarfnames import FOREIGN, parse_aranges, partial_dwarf, range_parts
from pmdb.unwind.cfi import evaluate_expr
from pmdb.unwind.frame import Frame

ReadMemory = Callable[[int, int], bytes]
_MAX_OPS = 64             # a longer expression is not a parameter's location
_MAX_PARAMS = 32
_ORIGIN_HOPS = 4


@dataclass(frozen=True)
class Param:
    """One parameter: ``value`` None when its location is unknown at this pc."""

    name: str
    value: int | None
    size: int
    pointer: bool = False
    signed: bool = False

    @property
    def text(self) -> str:
        """As gdb prints a scalar: a pointer in hex, an integer in decimal."""
        if self.value is None:
            return f"{self.name}=<optimized out>"
        if self.pointer:
            return f"{self.name}={self.value:#x}"
        value = self.value
        if self.signed and 0 < self.size <= 8 and value >> (8 * self.size - 1):
            value -= 1 << (8 * self.size)
        return f"{self.name}={value}"


@dataclass(frozen=True)
class FrameState:
    """What a location is evaluated against: the frame's known registers (by DWARF number),
    its CFA, and the process's memory."""

    regs: dict[int, int]
    cfa: int | None
    read: ReadMemory
    ptr_size: int
    little: bool
    bias: int = 0            # the object's load bias (DW_OP_addr is a link-time address)


class FrameParams:
    """``params_at(link_pc, state)``: the parameters of the function holding link_pc."""

    def __init__(self, elf: ELFFile) -> None:
        self._elf = elf
        self._dwarf: Any = None
        self._aranges: tuple[list[int], list[tuple[int, int, int]]] | None = None
        self._broken = False
        self._units: dict[int, list[tuple[int, int, Any]]] = {}

    def params_at(self, pc: int, state: FrameState) -> list[Param] | None:
        """None when no DWARF subprogram holds pc (or the DWARF cannot be read)."""
        if self._broken:
            return None
        try:
            found = self._subprogram(pc)
            if found is None:
                return None
            die, cu = found
            return _params(die, cu, pc, state, self._dwarf)
        except FOREIGN:
            self._broken = True         # one damaged file is one miss, not an error per frame
            return None

    def _subprogram(self, pc: int) -> tuple[Any, Any] | None:
        if self._aranges is None:
            section = self._elf.get_section_by_name(".debug_aranges")
            if section is None or self._elf.get_section_by_name(".debug_info") is None:
                self._broken = True
                return None
            self._aranges = parse_aranges(section.data(), self._elf.little_endian)
        starts, ranges = self._aranges
        i = bisect.bisect_right(starts, pc) - 1
        if i < 0 or not pc < ranges[i][1]:
            return None
        offset = ranges[i][2]
        if self._dwarf is None:
            self._dwarf = partial_dwarf(self._elf, locations=True)
        if offset not in self._units:
            self._units[offset] = _subprograms(self._dwarf.get_CU_at(offset))
        cu = self._dwarf.get_CU_at(offset)
        for lo, hi, die in self._units[offset]:
            if lo <= pc < hi:
                return die, cu
        return None


def _subprograms(cu: Any) -> list[tuple[int, int, Any]]:
    """Each pc range of the unit's top-level subprograms with its DIE."""
    out: list[tuple[int, int, Any]] = []
    top = cu.get_top_DIE()
    base_attr = top.attributes.get("DW_AT_low_pc")
    base = base_attr.value if base_attr is not None else 0
    for die in top.iter_children():
        if die.tag != "DW_TAG_subprogram":
            continue
        attrs = die.attributes
        low, high = attrs.get("DW_AT_low_pc"), attrs.get("DW_AT_high_pc")
        if low is not None and high is not None:
            hi = high.value if high.form == "DW_FORM_addr" else low.value + high.value
            out.append((low.value, hi, die))
        elif "DW_AT_ranges" in attrs:
            out += [(lo, hi, die) for lo, hi in range_parts(cu, attrs["DW_AT_ranges"], base)]
    return out


def _params(die: Any, cu: Any, pc: int, state: FrameState, dwarf: Any) -> list[Param]:
    version = cu["version"]
    parser = LocationParser(dwarf.location_lists())
    exprs = DWARFExprParser(cu.structs)
    frame_base = _frame_base(die, cu, pc, parser, exprs, state)
    out: list[Param] = []
    for child in die.iter_children():
        if child.tag != "DW_TAG_formal_parameter":
            continue
        if len(out) >= _MAX_PARAMS:
            break
        name = _attr_through_origin(child, "DW_AT_name")
        size, pointer, signed = _type_shape(child, state.ptr_size)
        expr = _expression_at(child, cu, version, pc, parser)
        value = None
        if expr is not None:
            value = _evaluate(exprs.parse_expr(expr), state, frame_base, size)
        shown = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "?")
        out.append(Param(shown, value, size, pointer, signed))
    return out


def _frame_base(die: Any, cu: Any, pc: int, parser: LocationParser, exprs: DWARFExprParser,
                state: FrameState) -> int | None:
    expr = _expression_at(die, cu, cu["version"], pc, parser, attr="DW_AT_frame_base")
    if expr is None:
        return None
    ops = exprs.parse_expr(expr)
    if len(ops) == 1 and ops[0].op_name == "DW_OP_call_frame_cfa":
        return state.cfa
    # a register (DW_OP_bregN off) as frame base: its value plus the offset is the address
    return _evaluate(ops, state, None, state.ptr_size, want_address=True)


def _expression_at(die: Any, cu: Any, version: int, pc: int, parser: LocationParser,
                   attr: str = "DW_AT_location") -> list[int] | None:
    """The expression that locates the DIE's value at pc: its one expression, or the location
    list's entry covering pc (None when none does)."""
    found = die.attributes.get(attr)
    if found is None:
        return None
    parsed = parser.parse_from_attribute(found, version, die=die)
    if hasattr(parsed, "loc_expr"):
        return list(parsed.loc_expr)
    base_attr = cu.get_top_DIE().attributes.get("DW_AT_low_pc")
    base = base_attr.value if base_attr is not None else 0
    for entry in parsed:
        if isinstance(entry, BaseAddressEntry):
            base = entry.base_address
        elif isinstance(entry, LocationEntry):
            lo, hi = (entry.begin_offset, entry.end_offset) if entry.is_absolute else \
                (base + entry.begin_offset, base + entry.end_offset)
            if lo <= pc < hi:
                return list(entry.loc_expr)
    return None


def _attr_through_origin(die: Any, name: str) -> Any:
    for _ in range(_ORIGIN_HOPS):
        attrs = die.attributes
        if name in attrs:
            return attrs[name].value
        if "DW_AT_abstract_origin" not in attrs:
            return None
        die = die.get_DIE_from_attribute("DW_AT_abstract_origin")
    return None


def _type_shape(die: Any, ptr_size: int) -> tuple[int, bool, bool]:
    """(size in bytes, is a pointer, is signed) of the parameter's type, through typedefs and
    qualifiers; a word when it cannot be told."""
    t = None
    for _ in range(_ORIGIN_HOPS):
        if "DW_AT_type" in die.attributes:
            t = die.get_DIE_from_attribute("DW_AT_type")
            break
        if "DW_AT_abstract_origin" not in die.attributes:
            break
        die = die.get_DIE_from_attribute("DW_AT_abstract_origin")
    for _ in range(16):
        if t is None:
            return ptr_size, False, False
        if t.tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"):
            return ptr_size, True, False
        if t.tag in ("DW_TAG_base_type", "DW_TAG_enumeration_type", "DW_TAG_structure_type",
                     "DW_TAG_union_type"):
            size = t.attributes.get("DW_AT_byte_size")
            encoding = t.attributes.get("DW_AT_encoding")
            signed = encoding is not None and encoding.value in (0x05, 0x06, 0x0D)   # DW_ATE_signed*
            return (size.value if size is not None else ptr_size), False, signed
        t = t.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in t.attributes else None
    return ptr_size, False, False


class _Unknown(Exception):
    """The expression needs something this frame does not know."""


_REGISTER_OPS = {0x50 + n: n for n in range(32)}      # DW_OP_reg0..31: the value is in a register


def _evaluate(ops: list[Any], state: FrameState, frame_base: int | None, size: int,
              want_address: bool = False) -> int | None:
    """The value an expression locates (read from memory unless it names a register or is a
    stack value), or None when it cannot be worked out here. The stack machine is the CFI
    one (unwind.cfi.evaluate_expr); the location forms around it are read here."""
    if not ops or len(ops) > _MAX_OPS:
        return None
    try:
        first = ops[0]
        if len(ops) == 1 and (first.op in _REGISTER_OPS or first.op_name == "DW_OP_regx"):
            number = first.args[0] if first.op_name == "DW_OP_regx" else _REGISTER_OPS[first.op]
            return _mask(_register(state, number), size)
        if len(ops) == 2 and ops[1].op_name == "DW_OP_implicit_value":
            return None
        is_value = ops[-1].op_name == "DW_OP_stack_value"
        body = list(ops[:-1] if is_value else ops)
        push: tuple[int, ...] = ()
        if body and body[0].op_name == "DW_OP_fbreg":
            if frame_base is None:
                return None
            push, body = ((frame_base + body[0].args[0]) & _word(state),), body[1:]
        elif body and body[0].op_name == "DW_OP_call_frame_cfa":
            if state.cfa is None:
                return None
            push, body = (state.cfa,), body[1:]
        body = [_relocated(op, state) for op in body]
        top = evaluate_expr(body, reg=lambda n: _register(state, n),
                            deref=lambda a: _read_int(state, a, state.ptr_size),
                            mask=_word(state), push=push)
        if is_value:
            return _mask(top, size)
        return top if want_address else _read_int(state, top, size)
    except (_Unknown, FormatError, IndexError, KeyError, ValueError, OverflowError, struct.error):
        return None      # entry values, pieces, typed ops: gdb's <optimized out> here too


def _relocated(op: Any, state: FrameState) -> Any:
    """DW_OP_addr names a link-time address: moved by the object's load bias."""
    if op.op_name == "DW_OP_addr" and state.bias:
        return op._replace(args=[op.args[0] + state.bias])
    return op


def _word(state: FrameState) -> int:
    return (1 << (8 * state.ptr_size)) - 1


def _register(state: FrameState, number: int) -> int:
    value = state.regs.get(number)
    if value is None:
        raise _Unknown
    return value


def _read_int(state: FrameState, addr: int, size: int) -> int:
    if not 0 < size <= 8:
        raise _Unknown
    try:
        data = state.read(addr, size)
    except PmdbError as err:          # a fault: the value is unreadable, not a failed $c
        raise _Unknown from err
    if len(data) != size:
        raise _Unknown
    return int.from_bytes(data, "little" if state.little else "big")


def _mask(value: int, size: int) -> int:
    return value & ((1 << (8 * size)) - 1) if 0 < size <= 8 else value


_READERS: weakref.WeakKeyDictionary[Any, FrameParams] = weakref.WeakKeyDictionary()


def frame_params(obj: Any, frame: Frame, arch: Arch, memory: AddressSpace) -> list[Param] | None:
    """The parameters of a user-core frame whose code is in ``obj`` (an ObjectFile: its
    debug file's DWARF, else its own), evaluated against what the unwinder knows of the
    frame; None without DWARF for its pc."""
    reader = _READERS.get(obj)
    if reader is None:
        try:
            elf = obj.debug_elf or obj.elf
        except PmdbError:
            return None
        reader = FrameParams(elf)
        with contextlib.suppress(TypeError):      # not weak-referenceable: no cache
            _READERS[obj] = reader
    numbers = {name: number for number, name in arch.dwarf_regs.items()}
    regs = {numbers[name]: value for name, value in frame.regs.items() if name in numbers}

    def read(addr: int, size: int) -> bytes:
        return memory.read(addr, size)

    state = FrameState(regs, frame.cfa, read, arch.ptr_size, arch.byteorder == "little", bias=obj.bias)
    return reader.params_at(frame.lookup_pc - obj.bias, state)
