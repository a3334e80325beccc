"""DWARF call-frame information (.eh_frame, .debug_frame) of one ELF object.

pyelftools parses the CIEs and FDEs; this module indexes the FDEs once per
object (from .eh_frame_hdr's sorted table when there is one, so a large
library is never parsed whole), runs the CFA program up to a pc itself (to
get DW_CFA_def_cfa_sf right and to honour SPARC's DW_CFA_GNU_window_save,
which pyelftools drops), and evaluates the simple DWARF expressions CFI uses.
Addresses here are link-time addresses: callers subtract the load bias.
"""

from __future__ import annotations

import bisect
import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError
from elftools.dwarf.callframe import FDE, CallFrameInfo
from elftools.dwarf.constants import DW_CFA
from elftools.dwarf.dwarf_expr import DWARFExprParser
from elftools.dwarf.structs import DWARFStructs
from elftools.elf.elffile import ELFFile

from pmdb.errors import FormatError

# pyelftools raises these on damaged or unusual CFI; they become FormatError here.
_FOREIGN = (ELFError, DWARFError, AssertionError, struct.error, KeyError, ValueError, IndexError,
            TypeError, OSError)

_WINDOW_SAVE = 0x2D  # DW_CFA_GNU_window_save on SPARC (same number as AArch64's negate_ra_state)


@dataclass(frozen=True)
class Rule:
    """How to recover one register in the caller (DWARF 6.4.1 register rules)."""

    kind: str                 # undefined same offset val_offset register expression val_expression
    arg: Any = None           # offset, register number, or expression bytes


@dataclass
class Row:
    """The unwind row for one pc: how to compute the CFA and the caller's registers."""

    cfa_reg: int | None = None
    cfa_offset: int = 0
    cfa_expr: bytes | None = None
    rules: dict[int, Rule] = field(default_factory=dict)
    ra_column: int = 0
    signal_frame: bool = False   # the FDE's CIE has the 'S' augmentation


@dataclass(frozen=True)
class _Entry:
    start: int
    end: int
    fde_offset: int


class _Section:
    """One CFI section: its pyelftools parser and a sorted FDE index."""

    def __init__(self, elf: ELFFile, name: str, hdr_name: str | None) -> None:
        found = elf.get_section_by_name(name)
        self.present = found is not None and found["sh_type"] != "SHT_NOBITS" and found["sh_size"] > 0
        self.entries: list[_Entry] = []
        self._starts: list[int] = []
        if found is None or not self.present:
            return
        sec = found
        eh = name == ".eh_frame"
        structs = DWARFStructs(little_endian=elf.little_endian, dwarf_format=32,
                               address_size=elf.elfclass // 8)
        self.structs = structs
        self.cfi = CallFrameInfo(io.BytesIO(sec.data()), sec["sh_size"], sec["sh_addr"], structs,
                                 for_eh_frame=eh)
        hdr = elf.get_section_by_name(hdr_name) if hdr_name else None
        table = _hdr_table(hdr, sec["sh_addr"], elf.little_endian) if hdr is not None else None
        if table is not None:
            self._index_from_hdr(table)
        elif eh or not self._index_headers(sec.data(), elf.elfclass // 8, elf.little_endian):
            self._index_all()

    def _index_from_hdr(self, table: list[tuple[int, int]]) -> None:
        # The hdr gives starts only; the end of each FDE is read when it is used.
        self.entries = [_Entry(loc, -1, off) for loc, off in table]
        self._starts = [e.start for e in self.entries]

    def _index_headers(self, data: bytes, address_size: int, little: bool) -> bool:
        """A .debug_frame's FDEs indexed from their headers alone (length, CIE pointer, then
        initial location and range as plain addresses): a vmlinux's 40,000 entries take
        milliseconds, where parsing every one took pyelftools ~7 s. False (and nothing kept)
        when a header does not fit: the full parse is then used."""
        e = "<" if little else ">"
        addr = e + ("QQ" if address_size == 8 else "II")
        found: list[_Entry] = []
        pos, end = 0, len(data)
        while pos + 4 <= end:
            (length,) = struct.unpack_from(e + "I", data, pos)
            if length == 0:
                pos += 4
                continue
            if length == 0xFFFFFFFF:
                if pos + 12 > end:
                    return False
                (length,) = struct.unpack_from(e + "Q", data, pos + 4)
                head, id_size, cie_id = pos + 12, 8, 0xFFFFFFFFFFFFFFFF
            else:
                head, id_size, cie_id = pos + 4, 4, 0xFFFFFFFF
            nxt = head + length
            if nxt > end or length < id_size:
                return False
            (ident,) = struct.unpack_from(e + ("I" if id_size == 4 else "Q"), data, head)
            if ident != cie_id:
                if head + id_size + 2 * address_size > nxt:
                    return False
                start, size = struct.unpack_from(addr, data, head + id_size)
                found.append(_Entry(start, start + size, pos))
            pos = nxt
        found.sort(key=lambda x: x.start)
        self.entries = found
        self._starts = [x.start for x in found]
        return True

    def _index_all(self) -> None:
        found = []
        for entry in self.cfi.get_entries():
            if isinstance(entry, FDE):
                start = entry.header["initial_location"]
                found.append(_Entry(start, start + entry.header["address_range"], entry.offset))
        found.sort(key=lambda e: e.start)
        self.entries = found
        self._starts = [e.start for e in found]

    def fde_for(self, pc: int) -> FDE | None:
        i = bisect.bisect_right(self._starts, pc) - 1
        # FDEs may nest or overlap (rare); look at a few candidates below pc.
        for j in range(i, max(i - 4, -1), -1):
            e = self.entries[j]
            if e.end != -1 and not e.start <= pc < e.end:
                continue
            fde = self.cfi._parse_entry_at(e.fde_offset)  # noqa: SLF001 - parse one entry, not all
            if not isinstance(fde, FDE):
                continue
            start = fde.header["initial_location"]
            if start <= pc < start + fde.header["address_range"]:
                return fde
        return None


def _hdr_table(hdr: Any, eh_addr: int, little: bool) -> list[tuple[int, int]] | None:
    """(initial location, .eh_frame offset) pairs from .eh_frame_hdr, when in the usual encoding."""
    data = hdr.data()
    if len(data) < 12 or data[0] != 1:
        return None
    _version, ptr_enc, count_enc, table_enc = data[:4]
    # The encoding every Linux linker writes: eh_frame_ptr pcrel|sdata4, count udata4,
    # table datarel|sdata4. Anything else: fall back to parsing the section whole.
    if ptr_enc != 0x1B or count_enc != 0x03 or table_enc != 0x3B:
        return None
    order = "<" if little else ">"
    (count,) = struct.unpack_from(order + "I", data, 8)
    if 12 + count * 8 > len(data):
        return None
    base = hdr["sh_addr"]
    pairs = struct.unpack_from(f"{order}{2 * count}i", data, 12)
    return [(base + pairs[k], base + pairs[k + 1] - eh_addr) for k in range(0, 2 * count, 2)]


class CfiTable:
    """All CFI of one ELF object; ``row(pc)`` answers how to unwind from pc."""

    def __init__(self, elf: ELFFile, *, window_save: bool = False) -> None:
        self.window_save = window_save
        self._rows: dict[int, Row | None] = {}   # threads stopped in the same places share rows
        self._parser: DWARFExprParser | None = None
        try:
            self._sections = [s for s in (_Section(elf, ".eh_frame", ".eh_frame_hdr"),
                                          _Section(elf, ".debug_frame", None)) if s.present]
        except _FOREIGN as err:
            raise FormatError(f"unreadable call-frame information: {err}") from None

    @property
    def empty(self) -> bool:
        return not any(s.entries for s in self._sections)

    def row(self, pc: int) -> Row | None:
        """The unwind row covering link-time pc, or None when no FDE covers it."""
        if pc in self._rows:
            return self._rows[pc]
        row = self._find_row(pc)
        if len(self._rows) < 65536:
            self._rows[pc] = row
        return row

    def _find_row(self, pc: int) -> Row | None:
        try:
            for sec in self._sections:
                fde = sec.fde_for(pc)
                if fde is not None:
                    return _run_program(fde, pc, self.window_save)
        except _FOREIGN as err:
            raise FormatError(f"bad call-frame information at {pc:#x}: {err}") from None
        return None

    def parser(self) -> DWARFExprParser:
        if self._parser is None:
            self._parser = DWARFExprParser(self._sections[0].structs)
        return self._parser


# -- the CFA program ---------------------------------------------------------------

def _run_program(fde: FDE, pc: int, window_save: bool) -> Row:
    """Execute the CIE's then the FDE's instructions up to (and including) pc's row."""
    cie = fde.cie
    if cie is None:
        raise FormatError(f"FDE at {fde.offset:#x} has no CIE")
    caf = cie.header["code_alignment_factor"]
    daf = cie.header["data_alignment_factor"]
    aug = cie.header.get("augmentation") or b""
    row = Row(ra_column=cie.header["return_address_register"], signal_frame=b"S" in aug)
    _execute(cie.instructions, row, None, [fde.header["initial_location"]], pc, caf, daf, window_save)
    initial = dict(row.rules)
    _execute(fde.instructions, row, initial, [fde.header["initial_location"]], pc, caf, daf, window_save)
    return row


def _execute(instrs: Sequence[Any], row: Row, initial: dict[int, Rule] | None, loc: list[int],
             pc: int, caf: int, daf: int, window_save: bool) -> None:
    """Apply instructions to row until the location passes pc (loc is shared, as a cell)."""
    stack: list[tuple[int | None, int, bytes | None, dict[int, Rule]]] = []
    for ins in instrs:
        op, args = ins.opcode, ins.args
        if op in (DW_CFA.advance_loc, DW_CFA.advance_loc1, DW_CFA.advance_loc2, DW_CFA.advance_loc4):
            loc[0] += args[0] * caf
        elif op == DW_CFA.set_loc:
            loc[0] = args[0]
        if loc[0] > pc:
            return
        if op == DW_CFA.remember_state:
            stack.append((row.cfa_reg, row.cfa_offset, row.cfa_expr, dict(row.rules)))
        elif op == DW_CFA.restore_state and stack:
            row.cfa_reg, row.cfa_offset, row.cfa_expr, row.rules = stack.pop()
        elif op in (DW_CFA.restore, DW_CFA.restore_extended):
            reg = args[0]
            if initial is not None and reg in initial:
                row.rules[reg] = initial[reg]
            else:
                row.rules.pop(reg, None)
        elif op == _WINDOW_SAVE:
            if window_save:
                _apply_window_save(row)
        else:
            _apply_rule(op, args, row, daf)


def _apply_rule(op: int, args: list[Any], row: Row, daf: int) -> None:
    handler = _HANDLERS.get(op)
    if handler is not None:
        handler(row, args, daf)


def _set_cfa(row: Row, reg: int | None, off: int) -> None:
    row.cfa_reg, row.cfa_offset, row.cfa_expr = reg, off, None


_HANDLERS: dict[int, Callable[[Row, list[Any], int], None]] = {
    DW_CFA.def_cfa: lambda r, a, d: _set_cfa(r, a[0], a[1]),
    DW_CFA.def_cfa_sf: lambda r, a, d: _set_cfa(r, a[0], a[1] * d),
    DW_CFA.def_cfa_register: lambda r, a, d: _set_cfa(r, a[0], r.cfa_offset),
    DW_CFA.def_cfa_offset: lambda r, a, d: _set_cfa(r, r.cfa_reg, a[0]),
    DW_CFA.def_cfa_offset_sf: lambda r, a, d: _set_cfa(r, r.cfa_reg, a[0] * d),
    DW_CFA.def_cfa_expression: lambda r, a, d: setattr(r, "cfa_expr", bytes(a[0])),
    DW_CFA.undefined: lambda r, a, d: r.rules.__setitem__(a[0], Rule("undefined")),
    DW_CFA.same_value: lambda r, a, d: r.rules.__setitem__(a[0], Rule("same")),
    DW_CFA.offset: lambda r, a, d: r.rules.__setitem__(a[0], Rule("offset", a[1] * d)),
    DW_CFA.offset_extended: lambda r, a, d: r.rules.__setitem__(a[0], Rule("offset", a[1] * d)),
    DW_CFA.offset_extended_sf: lambda r, a, d: r.rules.__setitem__(a[0], Rule("offset", a[1] * d)),
    DW_CFA.val_offset: lambda r, a, d: r.rules.__setitem__(a[0], Rule("val_offset", a[1] * d)),
    DW_CFA.val_offset_sf: lambda r, a, d: r.rules.__setitem__(a[0], Rule("val_offset", a[1] * d)),
    DW_CFA.register: lambda r, a, d: r.rules.__setitem__(a[0], Rule("register", a[1])),
    DW_CFA.expression: lambda r, a, d: r.rules.__setitem__(a[0], Rule("expression", bytes(a[1]))),
    DW_CFA.val_expression: lambda r, a, d: r.rules.__setitem__(a[0], Rule("val_expression", bytes(a[1]))),
}


def _apply_window_save(row: Row) -> None:
    """SPARC: the caller's %l/%i live in the window save area at the CFA, its %o are our %i."""
    for reg in range(16, 32):
        row.rules[reg] = Rule("offset", (reg - 16) * 8)
    for reg in range(8, 16):
        row.rules[reg] = Rule("register", reg + 16)


# -- DWARF expressions -------------------------------------------------------------

_BINARY: dict[str, Callable[[int, int], int]] = {
    "DW_OP_plus": lambda a, b: a + b, "DW_OP_minus": lambda a, b: a - b,
    "DW_OP_mul": lambda a, b: a * b, "DW_OP_and": lambda a, b: a & b,
    "DW_OP_or": lambda a, b: a | b, "DW_OP_xor": lambda a, b: a ^ b,
    "DW_OP_shl": lambda a, b: a << b, "DW_OP_shr": lambda a, b: a >> b,
    "DW_OP_ge": lambda a, b: int(a >= b), "DW_OP_gt": lambda a, b: int(a > b),
    "DW_OP_le": lambda a, b: int(a <= b), "DW_OP_lt": lambda a, b: int(a < b),
    "DW_OP_eq": lambda a, b: int(a == b), "DW_OP_ne": lambda a, b: int(a != b),
}


def evaluate_expr(ops: Sequence[Any], *, reg: Callable[[int], int], deref: Callable[[int], int],
                  mask: int, push: Sequence[int] = ()) -> int:
    """Run a CFI DWARF expression (already parsed by pyelftools); top of stack is the result.

    Covers what compilers and glibc emit for CFI (register-relative addresses,
    constants, arithmetic, comparisons, dereference); anything else is a FormatError.
    """
    stack = list(push)
    for op in ops:
        name = op.op_name
        if name.startswith("DW_OP_breg"):
            num = op.args[0] if name == "DW_OP_bregx" else op.op - 0x70
            off = op.args[1] if name == "DW_OP_bregx" else op.args[0]
            stack.append((reg(num) + off) & mask)
        elif name.startswith("DW_OP_lit"):
            stack.append(op.op - 0x30)
        elif name.startswith("DW_OP_const") or name == "DW_OP_addr":
            stack.append(op.args[0] & mask)
        elif name in _BINARY:
            b, a = stack.pop(), stack.pop()
            stack.append(_BINARY[name](a, b) & mask)
        elif name == "DW_OP_plus_uconst":
            stack.append((stack.pop() + op.args[0]) & mask)
        elif name == "DW_OP_deref":
            stack.append(deref(stack.pop()))
        elif name == "DW_OP_dup":
            stack.append(stack[-1])
        elif name == "DW_OP_drop":
            stack.pop()
        elif name == "DW_OP_swap":
            stack[-1], stack[-2] = stack[-2], stack[-1]
        elif name == "DW_OP_over":
            stack.append(stack[-2])
        elif name == "DW_OP_neg":
            stack.append(-stack.pop() & mask)
        elif name == "DW_OP_not":
            stack.append(~stack.pop() & mask)
        elif name != "DW_OP_nop":
            raise FormatError(f"unsupported DWARF expression operation {name} in CFI")
    if not stack:
        raise FormatError("empty DWARF expression in CFI")
    return stack[-1]
