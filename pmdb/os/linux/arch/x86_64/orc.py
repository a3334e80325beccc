"""The x86-64 kernel's ORC unwind tables, read from the dump's own memory.

ORC is objtool's simplified CFI: for each code address an entry says how to
find the caller's stack pointer (and frame pointer) from this frame's. The
kernel keeps vmlinux's tables between ``__start_orc_unwind_ip`` /
``__start_orc_unwind`` and each module's in ``mod->arch.orc_unwind_ip`` /
``orc_unwind`` / ``num_orc``; both are found through kallsyms and BTF, so no
vmlinux file is needed. ``orc_unwind_ip`` holds s32 offsets relative to each
slot's own address, sorted; ``orc_unwind`` holds parallel 6-byte entries.

The entry's last 16 bits changed twice (the version numbers are pmdb's):

- v1 (4.14-6.2): sp_reg:4 bp_reg:4 type:2 end:1, types CALL=0 REGS=1 REGS_PARTIAL=2;
- v2 (6.3, commit ffb1b4a41016 added ``signal``): sp_reg:4 bp_reg:4 type:2 signal:1 end:1;
- v3 (6.4+, fb799447ae29 split UNWIND_HINT_EMPTY): sp_reg:4 bp_reg:4 type:3 signal:1, types
  UNDEFINED=0 END_OF_STACK=1 CALL=2 REGS=3 REGS_PARTIAL=4 (``end`` became a type).

The base registers were renumbered later (Debian's 7.2 kernel has them; 6.12 does not):
SP 5 -> 3, PREV_SP 1 -> 8, BP_INDIRECT 8 -> 10, the others in place. Which numbering a
table uses is read off the table itself: the stack pointer is by far the most common
base of the previous SP (~75% of vmlinux's entries), so whichever of 3 and 5 dominates
names the numbering.

Entries are decoded into one normalized form, whatever the version.
"""

from __future__ import annotations

import array
import bisect
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pmdb.errors import FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kmodules import KernelModule, StructOffsets

# ORC_REG_*: the base register of the previous SP / BP (stable since 4.14)
REG_UNDEFINED = 0
REG_PREV_SP = 1
REG_DX = 2
REG_DI = 3
REG_BP = 4
REG_SP = 5
REG_R10 = 6
REG_R13 = 7
REG_BP_INDIRECT = 8
REG_SP_INDIRECT = 9
REG_NAMES = {REG_UNDEFINED: "undef", REG_PREV_SP: "prevsp", REG_DX: "dx", REG_DI: "di",
             REG_BP: "bp", REG_SP: "sp", REG_R10: "r10", REG_R13: "r13",
             REG_BP_INDIRECT: "bp(ind)", REG_SP_INDIRECT: "sp(ind)"}

# normalized frame types (v3's numbering)
TYPE_UNDEFINED = 0        # no unwind information here: an error to reach
TYPE_END = 1              # the end of the stack (v1/v2: sp_reg UNDEFINED with end set)
TYPE_CALL = 2             # a normal call frame: the return address sits below the previous SP
TYPE_REGS = 3             # the previous SP points at a full struct pt_regs
TYPE_REGS_PARTIAL = 4     # the previous SP points at the iret frame (ip, cs, flags, sp, ss)
TYPE_NAMES = {TYPE_UNDEFINED: "undefined", TYPE_END: "end", TYPE_CALL: "call",
              TYPE_REGS: "regs", TYPE_REGS_PARTIAL: "regs_partial"}

_V1_TYPES = (TYPE_CALL, TYPE_REGS, TYPE_REGS_PARTIAL, TYPE_UNDEFINED)

# a table's register numbers -> the ORC_REG_* above; the later numbering (see the docstring)
REGS_ORIGINAL = {n: n for n in REG_NAMES}
REGS_RENUMBERED = {0: REG_UNDEFINED, 8: REG_PREV_SP, 2: REG_DX, 4: REG_BP, 3: REG_SP, 6: REG_R10,
                   7: REG_R13, 10: REG_BP_INDIRECT, 9: REG_SP_INDIRECT}
_SAMPLE = 65536           # entries looked at to tell the numbering
ENTRY_SIZE = 6
_MAX_ENTRIES = 1 << 24    # a vmlinux has ~400k; more is a wild count

Lookup = Callable[[str], "int | None"]


@dataclass(frozen=True, slots=True)
class OrcEntry:
    """One ORC unwind entry: how to find the caller's sp and bp at an address."""

    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    type: int
    signal: bool = False

    def __str__(self) -> str:
        return (f"sp:{REG_NAMES.get(self.sp_reg, '?')}{self.sp_offset:+d} "
                f"bp:{REG_NAMES.get(self.bp_reg, '?')}{self.bp_offset:+d} "
                f"type:{TYPE_NAMES.get(self.type, '?')}{' signal' if self.signal else ''}")


def orc_version(release: str) -> int:
    """The entry layout of a kernel by its release string (``6.1.0-56-amd64``)."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    if m is None:
        return 1
    ver = (int(m.group(1)), int(m.group(2)))
    if ver >= (6, 4):
        return 3
    return 2 if ver >= (6, 3) else 1


_LOW_NIBBLE = bytes(b & 0xF for b in range(256))


def register_numbering(raw: bytes) -> dict[int, int]:
    """The numbering of a table's base registers (see the docstring), from its entries:
    sp_reg is the low nibble of each entry's byte 4, counted in C."""
    sp_regs = raw[4:ENTRY_SIZE * _SAMPLE:ENTRY_SIZE].translate(_LOW_NIBBLE)
    return REGS_RENUMBERED if sp_regs.count(3) > sp_regs.count(5) else REGS_ORIGINAL


def decode_entry(sp_offset: int, bp_offset: int, bits: int, version: int,
                 regs: dict[int, int] = REGS_ORIGINAL) -> OrcEntry:
    """One entry from its three little-endian fields, normalized to v3's types and the
    original register numbers (an unknown register number reads as undefined)."""
    sp_reg, bp_reg = regs.get(bits & 0xF, REG_UNDEFINED), regs.get((bits >> 4) & 0xF, REG_UNDEFINED)
    if version >= 3:
        kind, signal = (bits >> 8) & 0x7, bool(bits >> 11 & 1)
    else:
        kind = _V1_TYPES[(bits >> 8) & 0x3]
        signal = version == 2 and bool(bits >> 10 & 1)
        end = bool(bits >> (11 if version == 2 else 10) & 1)
        if sp_reg == REG_UNDEFINED:
            # before 6.4 an undefined SP meant the end of the stack only with 'end' set
            kind = TYPE_END if end else TYPE_UNDEFINED
    return OrcEntry(sp_offset, bp_offset, sp_reg, bp_reg, kind, signal)


class OrcTable:
    """One object's ORC (vmlinux or a module), read on first use in one piece per array."""

    def __init__(self, mem: AddressSpace, name: str, ip_table: int, entries: int, count: int,
                 text: list[tuple[int, int]], version: int) -> None:
        if not 0 <= count <= _MAX_ENTRIES:
            raise PmdbError(f"ORC table of {name} claims {count} entries")
        self.mem, self.name = mem, name
        self.ip_table, self.entries, self.count = ip_table, entries, count
        self.text = text                  # [start, end) ranges this table describes
        self.version = version
        self._ips: array.array[int] | None = None
        self._raw = b""
        self._regs = REGS_ORIGINAL
        self._cache: dict[int, OrcEntry | None] = {}

    def covers(self, ip: int) -> bool:
        return any(lo <= ip < hi for lo, hi in self.text)

    def _load(self) -> array.array[int]:
        if self._ips is None:
            ips = array.array("i")
            ips.frombytes(self.mem.read(self.ip_table, 4 * self.count))
            if ips.itemsize != 4:          # 'i' is 32-bit on every platform Python runs on
                raise PmdbError("no 32-bit array type on this platform")
            self._raw = self.mem.read(self.entries, ENTRY_SIZE * self.count)
            self._regs = register_numbering(self._raw)
            self._ips = ips
        return self._ips

    def ip_at(self, i: int) -> int:
        """The absolute address of entry i: each s32 is relative to its own slot."""
        return self.ip_table + 4 * i + self._load()[i]

    def entry_start(self, ip: int) -> int | None:
        """The table ip whose entry covers ``ip`` (where its run of code begins)."""
        ips = self._load()
        base = self.ip_table
        i = bisect.bisect_right(range(self.count), ip, key=lambda k: base + 4 * k + ips[k]) - 1
        return base + 4 * i + ips[i] if i >= 0 else None

    def find(self, ip: int) -> OrcEntry | None:
        """The entry for the last table ip at or before ``ip``; None outside the table."""
        if ip in self._cache:
            return self._cache[ip]
        ips = self._load()
        base = self.ip_table
        i = bisect.bisect_right(range(self.count), ip, key=lambda k: base + 4 * k + ips[k]) - 1
        found = None
        if i >= 0:
            sp_off, bp_off, bits = struct.unpack_from("<hhH", self._raw, ENTRY_SIZE * i)
            found = decode_entry(sp_off, bp_off, bits, self.version, self._regs)
        self._cache[ip] = found
        return found


class OrcFinder:
    """The ORC entry for any kernel code address: vmlinux's table, then the modules'."""

    def __init__(self, tables: list[OrcTable], other_text: list[tuple[int, int]] | None = None) -> None:
        self.tables = tables
        self.other_text = other_text or []   # code without a readable table (a module's)
        # per address, as 10,000 sleeping tasks return to the same few hundred
        self._text: dict[int, bool] = {}
        self._found: dict[int, OrcEntry | None] = {}

    def table_for(self, ip: int) -> OrcTable | None:
        for t in self.tables:
            if t.covers(ip):
                return t
        return None

    def is_text(self, ip: int) -> bool:
        """Kernel code: what a return address must point into (with or without ORC data)."""
        hit = self._text.get(ip)
        if hit is None:
            hit = self._text[ip] = self.in_text(ip)
        return hit

    def in_text(self, ip: int) -> bool:
        """is_text without keeping the answer: for the words of a stack scan."""
        return self.table_for(ip) is not None or any(lo <= ip < hi for lo, hi in self.other_text)

    def find(self, ip: int) -> OrcEntry | None:
        if ip in self._found:
            return self._found[ip]
        table = self.table_for(ip)
        found = self._found[ip] = table.find(ip) if table is not None else None
        return found

    def entry_start(self, ip: int) -> int | None:
        table = self.table_for(ip)
        return table.entry_start(ip) if table is not None else None


def vmlinux_table(mem: AddressSpace, lookup: Lookup, version: int) -> OrcTable:
    """vmlinux's table, by the linker symbols around the two arrays."""
    names = ("__start_orc_unwind_ip", "__stop_orc_unwind_ip", "__start_orc_unwind")
    start, stop, entries = (lookup(n) for n in names)
    if start is None or stop is None or entries is None:
        raise SymbolError("no __start_orc_unwind_ip/__start_orc_unwind symbols: "
                          "this kernel was built without the ORC unwinder")
    text = [r for r in (_range(lookup, "_stext", "_etext"), _range(lookup, "_sinittext", "_einittext"))
            if r is not None]
    return OrcTable(mem, "vmlinux", start, entries, (stop - start) // 4, text, version)


def _range(lookup: Lookup, lo: str, hi: str) -> tuple[int, int] | None:
    a, b = lookup(lo), lookup(hi)
    return (a, b) if a is not None and b is not None and a < b else None


def module_table(mem: AddressSpace, mod: KernelModule, offsets: StructOffsets,
                 version: int) -> OrcTable | None:
    """A module's table from ``mod->arch``; None when it has none or it is unreadable."""
    try:
        ip_table = mem.ptr(mod.address + offsets.offsetof("module", "arch.orc_unwind_ip"))
        entries = mem.ptr(mod.address + offsets.offsetof("module", "arch.orc_unwind"))
        count = mem.u32(mod.address + offsets.offsetof("module", "arch.num_orcs"))
    except (FaultError, SymbolError):
        return None
    if not ip_table or not entries or not 0 < count < _MAX_ENTRIES or not mod.size:
        return None
    return OrcTable(mem, mod.name, ip_table, entries, count, [(mod.base, mod.base + mod.size)], version)


def orc_finder(mem: AddressSpace, lookup: Lookup, modules: list[KernelModule],
               offsets: StructOffsets | None, release: str) -> OrcFinder:
    """Every ORC table of the kernel in ``mem``; modules need ``offsets`` (BTF)."""
    version = orc_version(release)
    tables = [vmlinux_table(mem, lookup, version)]
    other: list[tuple[int, int]] = []
    for mod in modules:
        table = module_table(mem, mod, offsets, version) if offsets is not None else None
        if table is not None:
            tables.append(table)
        elif mod.size:
            other.append((mod.base, mod.base + mod.size))
    return OrcFinder(tables, other)
