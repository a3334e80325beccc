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

import contextlib
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.locationlists import BaseAddressEntry, LocationEntry, LocationParser
from elftools.elf.elffile import ELFFile

from pmdb.arch import Arch
from pmdb.errors import FormatError, PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.dwarfnames import (
    FOREIGN,
    UnitRanges,
    function_name,
    partial_dwarf,
    range_parts,
    subprogram_parts,
)
from pmdb.unwind.cfi import CfiTable, evaluate_expr
from pmdb.unwind.frame import Frame
from pmdb.unwind.framepointer import StepFailed
from pmdb.unwind.user import apply_row

ReadMemory = Callable[[int, int], bytes]
_T = TypeVar("_T")
_MAX_OPS = 64             # a longer expression is not a parameter's location
_MAX_PARAMS = 32
_MAX_LOCALS = 256
_ORIGIN_HOPS = 4


@dataclass(frozen=True)
class Param:
    """One parameter: ``value`` at the frame's pc and ``entry``, its value when the function
    was entered (from the caller's call site); each None when it cannot be known."""

    name: str
    value: int | None
    size: int
    pointer: bool = False
    signed: bool = False
    entry: int | None = None
    aggregate: str = ""          # a struct, union or array: its type, and ``value`` its address

    @property
    def assignment(self) -> str:
        """As gdb's ``bt full`` and ``info locals`` print a local: ``n = 5``; a struct or
        array by its type and address (``::print`` shows it whole)."""
        if self.aggregate:
            where = "<optimized out>" if self.value is None else f"{self.value:#x}"
            return f"{self.name} = {{...}} ({self.aggregate} at {where})"
        return self.text.replace("=", " = ", 1)

    @property
    def text(self) -> str:
        """As gdb's bt prints it (``print entry-values default``): ``n=5``, ``n=n@entry=5``
        when both are known and equal, ``n=6, n@entry=5`` when they differ,
        ``n=<optimized out>, n@entry=5``, or ``n=<optimized out>``."""
        if self.value is not None and self.entry == self.value:
            return f"{self.name}={self.name}@entry={self._scalar(self.value)}"
        now = "<optimized out>" if self.value is None else self._scalar(self.value)
        if self.entry is None:
            return f"{self.name}={now}"
        return f"{self.name}={now}, {self.name}@entry={self._scalar(self.entry)}"

    def _scalar(self, value: int) -> str:
        """A pointer in hex, an integer in decimal (negative when its type is signed)."""
        if self.pointer:
            return f"{value:#x}"
        if self.signed and 0 < self.size <= 8 and value >> (8 * self.size - 1):
            value -= 1 << (8 * self.size)
        return str(value)


@dataclass(frozen=True)
class Inlined:
    """A call the compiler inlined at the frame's pc: the inlined function's name and its
    parameters' values there (gdb shows it as a frame of its own, without an address)."""

    name: str
    params: list[Param]


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
    # a register's value when the function was entered (DWARF number -> value or None)
    entry: Callable[[int], int | None] | None = None


class FrameParams:
    """``params_at(link_pc, state)``: the parameters of the function holding link_pc."""

    def __init__(self, elf: ELFFile, dwarf: Any = None) -> None:
        """``dwarf``: a DWARFInfo already made for the file (a vmlinux's, over its mapping);
        else one of only the sections parameters need."""
        self._elf = elf
        self._dwarf: Any = dwarf
        self._ranges = UnitRanges(elf)
        self._broken = False
        self._units: dict[int, list[tuple[int, int, Any, int]]] = {}
        self._sites: dict[int, dict[int, dict[int, list[int]]]] = {}   # subprogram -> return pc -> reg -> value

    def params_at(self, pc: int, state: FrameState) -> list[Param] | None:
        """None when no DWARF subprogram holds pc (or the DWARF cannot be read)."""
        return self._in_function(pc, lambda die, cu, entry: _params(die, cu, pc, entry, state, self._dwarf))

    def inlined_at(self, pc: int, state: FrameState) -> list[Inlined] | None:
        """The calls inlined at pc, innermost first (None as for params_at)."""
        return self._in_function(pc, lambda die, cu, _: _inlined(die, cu, pc, state, self._dwarf))

    def locals_at(self, pc: int, state: FrameState) -> list[Param] | None:
        """The local variables in scope at pc (None as for params_at)."""
        return self._in_function(pc, lambda die, cu, _: _locals(die, cu, pc, state, self._dwarf))

    def call_value(self, return_pc: int, regno: int, state: FrameState) -> int | None:
        """The value the call returning to return_pc passed in DWARF register regno, from the
        call site's DW_TAG_call_site_parameter (evaluated in the calling frame, ``state``)."""

        def value(die: Any, cu: Any, _entry: int) -> int | None:
            sites = self._sites.get(die.offset)
            if sites is None:
                sites = self._sites[die.offset] = _call_sites(die)
            expr = sites.get(return_pc, {}).get(regno)
            if expr is None:
                return None
            exprs = DWARFExprParser(cu.structs)
            parser = LocationParser(self._dwarf.location_lists())
            base = _frame_base(die, cu, return_pc - 1, parser, exprs, state)
            return _evaluate(exprs.parse_expr(expr), state, base, state.ptr_size, want="value")

        return self._in_function(return_pc - 1, value)

    def _in_function(self, pc: int, read: Callable[[Any, Any, int], _T]) -> _T | None:
        """read(DIE, unit, entry pc) of the subprogram holding pc; None without one. A file
        whose DWARF fails to parse is broken from then on: one miss, not an error per frame."""
        if self._broken:
            return None
        try:
            found = self._subprogram(pc)
            return read(*found) if found is not None else None
        except FOREIGN:
            self._broken = True
            return None

    def _subprogram(self, pc: int) -> tuple[Any, Any, int] | None:
        """(DIE, unit, entry pc) of the subprogram whose code holds pc."""
        offset = self._ranges.unit_at(pc)
        if offset is None:
            self._broken = self._ranges.missing
            return None
        if self._dwarf is None:
            self._dwarf = partial_dwarf(self._elf, locations=True)
        if offset not in self._units:
            self._units[offset] = list(subprogram_parts(self._dwarf.get_CU_at(offset)))
        cu = self._dwarf.get_CU_at(offset)
        for lo, hi, die, entry in self._units[offset]:
            if lo <= pc < hi:
                return die, cu, entry
        return None


_CALL_SITES = ("DW_TAG_call_site", "DW_TAG_GNU_call_site")
_SITE_PARAMS = ("DW_TAG_call_site_parameter", "DW_TAG_GNU_call_site_parameter")
_MAX_SITE_DIES = 200_000      # a subprogram's subtree walked for call sites: bounded


def _call_sites(die: Any) -> dict[int, dict[int, list[int]]]:
    """return pc -> {DWARF register: the DW_AT_call_value expression} of every call site in
    a subprogram (nested in blocks and inlined subroutines too)."""
    out: dict[int, dict[int, list[int]]] = {}
    todo, seen = [die], 0
    while todo and seen < _MAX_SITE_DIES:
        for child in todo.pop().iter_children():
            seen += 1
            if child.tag in _CALL_SITES:
                attrs = child.attributes
                ret = attrs.get("DW_AT_call_return_pc") or attrs.get("DW_AT_low_pc")
                if ret is not None:
                    out[ret.value] = _site_values(child)
            elif child.has_children:
                todo.append(child)
    return out


def _site_values(site: Any) -> dict[int, list[int]]:
    values: dict[int, list[int]] = {}
    for param in site.iter_children():
        if param.tag not in _SITE_PARAMS:
            continue
        attrs = param.attributes
        loc = attrs.get("DW_AT_location")
        value = attrs.get("DW_AT_call_value") or attrs.get("DW_AT_GNU_call_site_value")
        if loc is None or value is None or not isinstance(loc.value, list) or len(loc.value) != 1:
            continue
        op = loc.value[0]
        if 0x50 <= op <= 0x6F and isinstance(value.value, list):       # DW_OP_reg0..31
            values[op - 0x50] = value.value
    return values


def _params(die: Any, cu: Any, pc: int, entry_pc: int, state: FrameState, dwarf: Any) -> list[Param]:
    reader = _Variables(die, cu, pc, state, dwarf)
    params = [child for child in die.iter_children() if child.tag == "DW_TAG_formal_parameter"]
    return [reader.param(child, entry_pc) for child in params[:_MAX_PARAMS]]


def _inlined(die: Any, cu: Any, pc: int, state: FrameState, dwarf: Any) -> list[Inlined]:
    reader = _Variables(die, cu, pc, state, dwarf)
    out = []
    for site in reversed(_inline_chain(die, cu, pc)):
        params = [reader.param(c, None) for c in site.iter_children()
                  if c.tag == "DW_TAG_formal_parameter"][:_MAX_PARAMS]
        out.append(Inlined(function_name(site) or "??", params))
    return out


def _locals(die: Any, cu: Any, pc: int, state: FrameState, dwarf: Any) -> list[Param]:
    """The variables in scope at pc, the innermost lexical block's first, as gdb lists them
    (an inlined subroutine's own belong to it, not to this frame)."""
    reader = _Variables(die, cu, pc, state, dwarf)
    return [reader.param(v, None) for v in _block_order(die, cu, pc)[:_MAX_LOCALS]]


def _block_order(die: Any, cu: Any, pc: int) -> list[Any]:
    """The DW_TAG_variable DIEs of the blocks holding pc, innermost block first."""
    chain, block = [], die
    for _ in range(64):
        chain.append(block)
        inner = next((c for c in block.iter_children()
                      if c.tag == "DW_TAG_lexical_block" and _covers(c, cu, pc)), None)
        if inner is None:
            break
        block = inner
    out: list[Any] = []
    for block in reversed(chain):
        out += [c for c in block.iter_children() if c.tag == "DW_TAG_variable"]
    return out


def _const_value(die: Any, state: FrameState, size: int) -> int | None:
    """A DW_AT_const_value (a constant the compiler folded the variable into)."""
    attr = die.attributes.get("DW_AT_const_value")
    if attr is None:
        return None
    if isinstance(attr.value, int):
        return _mask(attr.value, size)
    if isinstance(attr.value, list) and 0 < len(attr.value) <= 8:
        return int.from_bytes(bytes(attr.value), "little" if state.little else "big")
    return None


def _covers(block: Any, cu: Any, pc: int) -> bool:
    attrs = block.attributes
    low, high = attrs.get("DW_AT_low_pc"), attrs.get("DW_AT_high_pc")
    if low is not None and high is not None:
        hi = high.value if high.form == "DW_FORM_addr" else low.value + high.value
        return bool(low.value <= pc < hi)
    if "DW_AT_ranges" in attrs:
        base_attr = cu.get_top_DIE().attributes.get("DW_AT_low_pc")
        parts = range_parts(cu, attrs["DW_AT_ranges"], base_attr.value if base_attr is not None else 0)
        return any(lo <= pc < hi for lo, hi in parts)
    return False


_MAX_INLINE_DEPTH = 64


def _inline_chain(die: Any, cu: Any, pc: int) -> list[Any]:
    """The DW_TAG_inlined_subroutine DIEs holding pc, outermost first (searched through the
    lexical blocks that hold pc too)."""
    chain: list[Any] = []
    scope = die
    while len(chain) < _MAX_INLINE_DEPTH:
        todo, site = [scope], None
        while todo and site is None:
            for child in todo.pop().iter_children():
                if child.tag == "DW_TAG_inlined_subroutine" and _covers(child, cu, pc):
                    site = child
                    break
                if child.tag == "DW_TAG_lexical_block" and _covers(child, cu, pc):
                    todo.append(child)
        if site is None:
            break
        chain.append(site)
        scope = site
    return chain


class _Variables:
    """Values of one frame's parameters and locals (the subprogram's frame base found once)."""

    def __init__(self, die: Any, cu: Any, pc: int, state: FrameState, dwarf: Any) -> None:
        self.cu, self.pc, self.state = cu, pc, state
        self.version = cu["version"]
        self.parser = LocationParser(dwarf.location_lists())
        self.exprs = DWARFExprParser(cu.structs)
        self.frame_base = _frame_base(die, cu, pc, self.parser, self.exprs, state)

    def param(self, die: Any, entry_pc: int | None) -> Param:
        """One parameter or variable; with entry_pc, its entry value too (parameters)."""
        state = self.state
        name = _attr_through_origin(die, "DW_AT_name")
        size, pointer, signed, aggregate = _type_shape(die, state.ptr_size)
        expr = _expression_at(die, self.cu, self.version, self.pc, self.parser)
        value = _const_value(die, state, size)
        if expr is not None and value is None:
            value = _evaluate(self.exprs.parse_expr(expr), state, self.frame_base, size,
                              want="address" if aggregate else "location")
        entry = None
        if entry_pc is not None and not aggregate:
            entry = _entry_value(die, self.cu, self.version, entry_pc, self.parser, self.exprs, state, size)
        shown = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "?")
        return Param(shown, value, size, pointer, signed, entry, aggregate)


def _entry_value(param: Any, cu: Any, version: int, entry_pc: int, parser: LocationParser,
                 exprs: DWARFExprParser, state: FrameState, size: int) -> int | None:
    """The parameter's value at the function's entry, where its location there is a register
    and the caller's call site says what it passed in it (gdb's ``@entry``)."""
    if state.entry is None:
        return None
    expr = _expression_at(param, cu, version, entry_pc, parser)
    if expr is None or len(expr) != 1 or not 0x50 <= expr[0] <= 0x6F:
        return None
    value = state.entry(expr[0] - 0x50)
    return None if value is None else _mask(value, size)


def _frame_base(die: Any, cu: Any, pc: int, parser: LocationParser, exprs: DWARFExprParser,
                state: FrameState) -> int | None:
    expr = _expression_at(die, cu, cu["version"], pc, parser, attr="DW_AT_frame_base")
    if expr is None:
        return None
    ops = exprs.parse_expr(expr)
    if len(ops) == 1 and ops[0].op_name == "DW_OP_call_frame_cfa":
        return state.cfa
    # a register (DW_OP_bregN off) as frame base: its value plus the offset is the address
    return _evaluate(ops, state, None, state.ptr_size, want="address")


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


def _type_shape(die: Any, ptr_size: int) -> tuple[int, bool, bool, str]:
    """(size in bytes, is a pointer, is signed, the type's spelling if it is a struct, union
    or array) of a variable's type, through typedefs and qualifiers; a word when it cannot
    be told."""
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
            return ptr_size, False, False, ""
        if t.tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"):
            return ptr_size, True, False, ""
        size = t.attributes.get("DW_AT_byte_size")
        if t.tag in _AGGREGATES:
            tag = _AGGREGATES[t.tag]
            name = t.attributes.get("DW_AT_name")
            spelled = name.value.decode("utf-8", "replace") if name is not None and isinstance(name.value, bytes) else "?"
            return (size.value if size is not None else 0), False, False, \
                (f"{tag} {spelled}" if tag else "array")
        if t.tag in ("DW_TAG_base_type", "DW_TAG_enumeration_type"):
            encoding = t.attributes.get("DW_AT_encoding")
            signed = encoding is not None and encoding.value in (0x05, 0x06, 0x0D)   # DW_ATE_signed*
            return (size.value if size is not None else ptr_size), False, signed, ""
        t = t.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in t.attributes else None
    return ptr_size, False, False, ""


_AGGREGATES = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union",
               "DW_TAG_class_type": "class", "DW_TAG_array_type": ""}


class _Unknown(Exception):
    """The expression needs something this frame does not know."""


_REGISTER_OPS = {0x50 + n: n for n in range(32)}      # DW_OP_reg0..31: the value is in a register


def _evaluate(ops: list[Any], state: FrameState, frame_base: int | None, size: int,
              want: str = "location") -> int | None:
    """What an expression gives, or None when it cannot be worked out here: for a
    "location", the value there (read from memory unless it names a register or is a stack
    value); for an "address" or a "value" (a call site's DW_AT_call_value), the top of the
    stack. The stack machine is the CFI one (unwind.cfi.evaluate_expr); the location forms
    and entry values around it are read here."""
    if not ops or len(ops) > _MAX_OPS:
        return None
    try:
        first = ops[0]
        if len(ops) == 1 and (first.op in _REGISTER_OPS or first.op_name == "DW_OP_regx"):
            number = first.args[0] if first.op_name == "DW_OP_regx" else _REGISTER_OPS[first.op]
            return _mask(_register(state, number), size)
        if len(ops) == 2 and ops[1].op_name == "DW_OP_implicit_value":
            return None
        is_value = want == "value" or ops[-1].op_name == "DW_OP_stack_value"
        body = list(ops[:-1] if ops[-1].op_name == "DW_OP_stack_value" else ops)
        push: tuple[int, ...] = ()
        if body and body[0].op_name == "DW_OP_fbreg":
            if frame_base is None:
                return None
            push, body = ((frame_base + body[0].args[0]) & _word(state),), body[1:]
        elif body and body[0].op_name == "DW_OP_call_frame_cfa":
            if state.cfa is None:
                return None
            push, body = (state.cfa,), body[1:]
        body = [_resolved(op, state) for op in body]
        top = evaluate_expr(body, reg=lambda n: _register(state, n),
                            deref=lambda a: _read_int(state, a, state.ptr_size),
                            mask=_word(state), push=push)
        if is_value:
            return _mask(top, size)
        return top if want == "address" else _read_int(state, top, size)
    except (_Unknown, FormatError, IndexError, KeyError, ValueError, OverflowError, struct.error):
        return None      # pieces, typed ops, unknown registers: gdb's <optimized out> here too


_ENTRY_VALUE = ("DW_OP_entry_value", "DW_OP_GNU_entry_value")


def _resolved(op: Any, state: FrameState) -> Any:
    """An op the CFI machine can run: DW_OP_addr moved by the object's load bias (it names a
    link-time address), and the entry value of a register (DW_OP_entry_value(DW_OP_regN))
    taken from the caller's call site as a constant."""
    if op.op_name == "DW_OP_addr" and state.bias:
        return op._replace(args=[op.args[0] + state.bias])
    if op.op_name in _ENTRY_VALUE:
        inner = op.args[0] if op.args else []
        if state.entry is None or len(inner) != 1 or inner[0].op not in _REGISTER_OPS:
            raise _Unknown
        value = state.entry(_REGISTER_OPS[inner[0].op])
        if value is None:
            raise _Unknown
        return op._replace(op_name="DW_OP_constu", args=[value])
    return op


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
_MAX_ENTRY_DEPTH = 8          # callers asked in turn for an entry value (gdb follows a chain too)


def frame_params(frames: list[Frame], index: int, arch: Arch, memory: AddressSpace,
                 object_at: Callable[[int], Any]) -> list[Param] | None:
    """The parameters of frames[index] of a user-core stack, whose code is in the object
    ``object_at(pc)`` gives (an ObjectFile: its debug file's DWARF, else its own); values
    from what the unwinder knows of the frame, entry values from its callers' call sites.
    None without DWARF for its pc."""
    found = _frame_reader(frames, index, arch, memory, object_at)
    return found[0].params_at(found[1], found[2]) if found is not None else None


def frame_locals(frames: list[Frame], index: int, arch: Arch, memory: AddressSpace,
                 object_at: Callable[[int], Any]) -> list[Param] | None:
    """The local variables in scope in frames[index] (found as frame_params finds them)."""
    found = _frame_reader(frames, index, arch, memory, object_at)
    return found[0].locals_at(found[1], found[2]) if found is not None else None


def frame_inlined(frames: list[Frame], index: int, arch: Arch, memory: AddressSpace,
                  object_at: Callable[[int], Any]) -> list[Inlined] | None:
    """The calls inlined at frames[index]'s pc, innermost first."""
    found = _frame_reader(frames, index, arch, memory, object_at)
    return found[0].inlined_at(found[1], found[2]) if found is not None else None


def _frame_reader(frames: list[Frame], index: int, arch: Arch, memory: AddressSpace,
                  object_at: Callable[[int], Any]) -> tuple[FrameParams, int, FrameState] | None:
    """(the reader of the frame's object, its pc in that file, its state)."""
    frame = frames[index]
    obj = object_at(_lookup_pc(frame))
    reader = _reader(obj)
    if reader is None:
        return None
    return reader, _lookup_pc(frame) - obj.bias, _state(frames, index, obj, arch, memory, object_at, 0)


def _registers(frames: list[Frame], index: int, arch: Arch, memory: AddressSpace,
                object_at: Callable[[int], Any]) -> dict[str, int]:
    """frames[index]'s registers: the unwinder's, and where a frame's object carries DWARF CFI
    the unwinder did not use (a kernel walked by ORC, which restores only sp, ip and bp:
    ``obj.cfi``, the vmlinux's .debug_frame), the callee-saved ones those rows restore, from
    the innermost frame (or the last exception frame, whose pt_regs are whole) outwards."""
    regs = dict(frames[0].regs)
    for f, nxt in zip(frames[:index], frames[1:index + 1], strict=True):
        obj: Any = object_at(_lookup_pc(f)) if nxt.exception is None else None
        table: CfiTable | None = getattr(obj, "cfi", None)
        caller: dict[str, int] = {}
        if table is not None:
            with contextlib.suppress(PmdbError, StepFailed):
                row = table.row(_lookup_pc(f) - obj.bias)
                if row is not None:
                    caller = apply_row(row, regs, arch, memory, table)[0]
        regs = {**caller, **nxt.regs}      # the unwinder's own sp and pc stand
    return regs


def _called(frame: Frame) -> bool:
    """frame.pc is a return address: a user core's caller frame (call_site), or a kernel
    frame read from a stack slot."""
    return frame.call_site or frame.slot is not None


def _lookup_pc(frame: Frame) -> int:
    """Where a frame's code is: the call before a return address."""
    return frame.pc - 1 if _called(frame) and frame.pc else frame.pc


def _reader(obj: Any) -> FrameParams | None:
    """The object's FrameParams: its own (``obj.frame_params``, a kernel's vmlinux), else one
    made once over its debug file or itself."""
    if obj is None:
        return None
    own = getattr(obj, "frame_params", None)
    if own is not None:
        return own
    reader = _READERS.get(obj)
    if reader is None:
        try:
            elf = obj.debug_elf or obj.elf
        except PmdbError:
            return None
        reader = FrameParams(elf)
        with contextlib.suppress(TypeError):      # not weak-referenceable: no cache
            _READERS[obj] = reader
    return reader


def _state(frames: list[Frame], index: int, obj: Any, arch: Arch, memory: AddressSpace,
           object_at: Callable[[int], Any], depth: int) -> FrameState:
    frame = frames[index]
    numbers = {name: number for number, name in arch.dwarf_regs.items()}
    known = _registers(frames, index, arch, memory, object_at)
    regs = {numbers[name]: value for name, value in known.items() if name in numbers}

    def entry(regno: int) -> int | None:
        """What the caller passed in regno: its call site's value, evaluated in its frame."""
        if depth >= _MAX_ENTRY_DEPTH or index + 1 >= len(frames):
            return None
        caller = frames[index + 1]
        if not _called(caller):           # frames[index] was interrupted (a signal), not called
            return None
        caller_obj = object_at(_lookup_pc(caller))
        reader = _reader(caller_obj)
        if reader is None:
            return None
        state = _state(frames, index + 1, caller_obj, arch, memory, object_at, depth + 1)
        return reader.call_value(caller.pc - caller_obj.bias, regno, state)

    cfa = frame.cfa
    if cfa is None and index + 1 < len(frames) and _called(frames[index + 1]):
        cfa = frames[index + 1].sp        # a kernel walk keeps no CFA: the caller's sp after the return
    return FrameState(regs, cfa, memory.read, arch.ptr_size, arch.byteorder == "little",
                      bias=obj.bias, entry=entry)
