"""One compile unit's .debug_line program decoded into a table of address -> (file, line).

pyelftools builds an object per line-program opcode; a kernel unit's program has tens of
thousands of them, so the state machine is run here over the raw bytes (DWARF 2-5), and
only the rows are kept: parallel lists of address, file index, line and flags, each
sequence's rows in address order. ``lookup`` answers as gdb's find_pc_line does (the row at
or before the address; a non-statement row gives way to a statement row at the same
address), which is what crash's ``dis -l`` and ``bt -l`` print.

Every step is bounded by the unit's end: a malformed program is one FormatError.
"""

from __future__ import annotations

import bisect
import posixpath
import struct
from dataclasses import dataclass, field
from typing import Any

from pmdb.errors import FormatError
from pmdb.types.dwarf_scan import _uleb_fast as _uleb

IS_STMT, END_SEQUENCE = 1, 2
# DW_LNCT_*
_LNCT_PATH, _LNCT_DIRECTORY = 1, 2
# DW_FORM_* of line-header entries
_FORM_STRING, _FORM_LINE_STRP, _FORM_STRP, _FORM_UDATA = 0x08, 0x1F, 0x0E, 0x0F
_FIXED = {0x0B: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x1E: 16}      # data1/2/4/8/16


@dataclass
class LineTable:
    """The rows of one unit's line program, sorted by address (end-of-sequence rows have
    line 0 and mark where a sequence's code stops)."""

    files: list[str]
    addrs: list[int] = field(default_factory=list)
    file_of: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """(file, line) of the code at ``addr``, or None when no row covers it."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or self.flags[i] & END_SEQUENCE or self.lines[i] == 0:
            return None
        if not self.flags[i] & IS_STMT:
            # gdb: among rows at the same address, a statement row is preferred
            j = i
            while j > 0 and self.addrs[j - 1] == self.addrs[i] and self.lines[j - 1] \
                    and not self.flags[j - 1] & END_SEQUENCE and not self.flags[j] & IS_STMT:
                j -= 1
            if self.flags[j] & IS_STMT:
                i = j
        f = self.file_of[i]
        if not 0 <= f < len(self.files):
            return None
        return self.files[f], self.lines[i]

    def span(self) -> tuple[int, int]:
        return (self.addrs[0], self.addrs[-1]) if self.addrs else (0, 0)

    def dump(self) -> tuple[Any, ...]:
        return (self.files, self.addrs, self.file_of, self.lines, self.flags)

    @classmethod
    def load(cls, data: Any) -> LineTable:
        """A table from ``dump()``'s tuple; FormatError for anything malformed."""
        try:
            files, addrs, file_of, lines, flags = data
            table = cls(list(files), list(addrs), list(file_of), list(lines), list(flags))
        except (TypeError, ValueError):
            raise FormatError("malformed line table") from None
        n = len(table.addrs)
        if not all(isinstance(s, str) for s in table.files) or \
                not len(table.file_of) == len(table.lines) == len(table.flags) == n or \
                table.addrs != sorted(table.addrs):
            raise FormatError("malformed line table")
        return table


@dataclass
class Strings:
    """Where DW_FORM_line_strp and DW_FORM_strp names are read: (absolute offset, size)."""

    line_str: tuple[int, int] = (0, 0)
    str: tuple[int, int] = (0, 0)


def decode(data: Any, pos: int, end: int, strings: Strings, *, comp_dir: str = "",
           little: bool = True) -> LineTable:
    """The line program at absolute ``pos`` of ``data`` (``end``: its section's end)."""
    try:
        return _decode(data, pos, end, strings, comp_dir, "<" if little else ">")
    except (IndexError, struct.error, UnicodeDecodeError) as err:
        raise FormatError(f"bad line program at {pos:#x} ({type(err).__name__})") from None


def initial_length(data: Any, pos: int, e: str) -> tuple[int, int, int]:
    """A DWARF unit's length field at ``pos``: (length, offset size 4 or 8, position after it)."""
    length = struct.unpack_from(e + "I", data, pos)[0]
    if length == 0xFFFFFFFF:
        return struct.unpack_from(e + "Q", data, pos + 4)[0], 8, pos + 12
    return length, 4, pos + 4


def _decode(data: Any, pos: int, end: int, strings: Strings, comp_dir: str, e: str) -> LineTable:
    length, osize, p = initial_length(data, pos, e)
    unit_end = p + length
    if unit_end > end or length < 2:
        raise FormatError(f"line program at {pos:#x} runs past .debug_line")
    version = struct.unpack_from(e + "H", data, p)[0]
    p += 2
    if not 2 <= version <= 5:
        raise FormatError(f"line program at {pos:#x} has version {version}")
    addr_size = 8
    if version >= 5:
        addr_size = data[p]
        p += 2
    header_length = struct.unpack_from(e + ("I" if osize == 4 else "Q"), data, p)[0]
    p += osize
    program = p + header_length
    min_insn = data[p]
    p += 1
    if version >= 4:
        p += 1                                  # maximum_operations_per_instruction (VLIW)
    default_stmt = data[p]
    line_base = struct.unpack_from("b", data, p + 1)[0]
    line_range, opcode_base = data[p + 2], data[p + 3]
    p += 4
    if line_range == 0:
        raise FormatError(f"line program at {pos:#x}: line_range 0")
    std_lengths = [0, *data[p:p + opcode_base - 1]]
    p += opcode_base - 1
    if version >= 5:
        dirs, p = _entries(data, p, unit_end, strings, osize, e)
        files_raw, p = _entries(data, p, unit_end, strings, osize, e)
        dir_names = [d[0] for d in dirs]
        files = [_path(name, dir_names, d, version, comp_dir) for name, d in files_raw]
    else:
        dir_names = [comp_dir]
        while data[p]:
            stop = _find_nul(data, p, unit_end)
            dir_names.append(bytes(data[p:stop]).decode("utf-8", "replace"))
            p = stop + 1
        p += 1
        files = [""]                          # 1-based in DWARF 2-4
        while data[p]:
            stop = _find_nul(data, p, unit_end)
            name = bytes(data[p:stop]).decode("utf-8", "replace")
            d, p = _uleb(data, stop + 1)
            _, p = _uleb(data, p)
            _, p = _uleb(data, p)
            files.append(_path(name, dir_names, d, version, comp_dir))
    table = LineTable(files)
    _run(data, program, unit_end, table, min_insn, default_stmt, line_base, line_range,
         opcode_base, std_lengths, addr_size, e, 0 if version >= 5 else 1)
    _sort(table)
    return table


def _path(name: str, dirs: list[str], d: int, version: int, comp_dir: str) -> str:
    """A file entry's name as gdb's symtab (and so crash) spells it: joined to its
    directory unless absolute, and to the unit's directory when still relative."""
    if not name.startswith("/") and 0 <= d < len(dirs) and (d != 0 or version < 5) and dirs[d]:
        name = posixpath.join(dirs[d], name) if d else name
    base = dirs[0] if version >= 5 and dirs else comp_dir
    if not name.startswith("/") and base:
        name = posixpath.join(base, name)
    return name


def _entries(data: Any, p: int, end: int, strings: Strings, osize: int,
             e: str) -> tuple[list[tuple[str, int]], int]:
    """A DWARF 5 directory or file table: (path, directory index) per entry."""
    nformats = data[p]
    p += 1
    formats = []
    for _ in range(nformats):
        kind, p = _uleb(data, p)
        form, p = _uleb(data, p)
        formats.append((kind, form))
    count, p = _uleb(data, p)
    out = []
    for _ in range(count):
        path, d = "", 0
        for kind, form in formats:
            value: Any
            if form == _FORM_STRING:
                stop = _find_nul(data, p, end)
                value = bytes(data[p:stop]).decode("utf-8", "replace")
                p = stop + 1
            elif form in (_FORM_LINE_STRP, _FORM_STRP):
                off = struct.unpack_from(e + ("I" if osize == 4 else "Q"), data, p)[0]
                p += osize
                base, size = strings.line_str if form == _FORM_LINE_STRP else strings.str
                if off >= size:
                    raise FormatError("line table name offset past its string section")
                stop = _find_nul(data, base + off, base + size)
                value = bytes(data[base + off:stop]).decode("utf-8", "replace")
            elif form == _FORM_UDATA:
                value, p = _uleb(data, p)
            elif form in _FIXED:
                n = _FIXED[form]
                value = int.from_bytes(data[p:p + n], "little" if e == "<" else "big")
                p += n
            elif form == 0x09:                  # block
                n, p = _uleb(data, p)
                value, p = None, p + n
            else:
                raise FormatError(f"line table entry form {form:#x} is not supported")
            if kind == _LNCT_PATH:
                path = value
            elif kind == _LNCT_DIRECTORY:
                d = value
        out.append((path, d))
        if p > end:
            raise IndexError
    return out, p


def _run(data: Any, p: int, end: int, t: LineTable, min_insn: int, default_stmt: int,
         line_base: int, line_range: int, opcode_base: int, std_lengths: list[int],
         addr_size: int, e: str, first_file: int) -> None:
    """The line-number state machine; rows are kept as gdb's DWARF reader keeps them."""
    rec = _Recorder(t, first_file, default_stmt)
    addr_fmt = e + {4: "I", 8: "Q"}.get(addr_size, "Q")
    while p < end:
        op = data[p]
        p += 1
        if op >= opcode_base:
            adj = op - opcode_base
            rec.address += (adj // line_range) * min_insn
            rec.advance_line(line_base + adj % line_range)
            rec.row()
        elif op == 0:
            n, p = _uleb(data, p)
            sub, q = data[p], p + n
            if q <= p:
                raise FormatError("extended line opcode of length 0")
            if sub == 1:
                rec.end_sequence()
            elif sub == 2:
                rec.address = struct.unpack_from(addr_fmt, data, p + 1)[0]
            elif sub == 4:
                rec.discriminator, _ = _uleb(data, p + 1)
                rec.nonzero_discriminator |= rec.discriminator != 0
            p = q
        elif op == 1:
            rec.row()
        elif op == 2:
            n, p = _uleb(data, p)
            rec.address += n * min_insn
        elif op == 3:
            n, p = _sleb(data, p)
            rec.advance_line(n)
        elif op == 4:
            rec.file, p = _uleb(data, p)
        elif op == 6:
            rec.stmt ^= IS_STMT
        elif op == 8:
            rec.address += ((255 - opcode_base) // line_range) * min_insn
        elif op == 9:
            rec.address += struct.unpack_from(e + "H", data, p)[0]
            p += 2
        else:                                              # 5, 7, 10-12 and unknown: skip operands
            for _ in range(std_lengths[op] if op < len(std_lengths) else 0):
                _, p = _uleb(data, p)


class _Recorder:
    """The state machine's registers, and which rows it keeps: gdb drops a repeat of the
    line just recorded once that line had a discriminator (PR 17276), a non-statement row
    of a new file at an address that already has a statement row, and, at a switch of
    file, the old file's rows at the switch's address. Matching that is what makes a
    lookup equal ``info line`` (and so crash's dis -l) where rows share an address."""

    def __init__(self, t: LineTable, first_file: int, default_stmt: int) -> None:
        self.t, self.first_file, self.default = t, first_file, IS_STMT if default_stmt else 0
        self.last_address = 0
        self._reset()

    def _reset(self) -> None:
        self.address, self.file, self.line, self.stmt = 0, 1, 1, self.default
        self.discriminator, self.nonzero_discriminator = 0, False
        self.last_file: int | None = None
        self.last_line = 0
        self.last_address, self.stmt_at_address = self.address, False

    def advance_line(self, delta: int) -> None:
        self.line += delta
        if delta:
            self.nonzero_discriminator = self.discriminator != 0

    def row(self) -> None:
        file = self.file - self.first_file
        changed = file != self.last_file
        ignore = (changed and self.last_address == self.address and not self.stmt
                  and self.stmt_at_address) or self.line == 0
        if changed and not ignore:
            self._drop_at(self.address)
        if not ignore:
            if changed or self.line != self.last_line or not self.nonzero_discriminator:
                t = self.t
                t.addrs.append(self.address)
                t.file_of.append(file)
                t.lines.append(self.line)
                t.flags.append(self.stmt)
            self.last_file, self.last_line = file, self.line
        self._track_stmt()
        self.discriminator = 0

    def end_sequence(self) -> None:
        self._drop_at(self.address)
        t = self.t
        t.addrs.append(self.address)
        t.file_of.append(-1)
        t.lines.append(0)
        t.flags.append(END_SEQUENCE)
        self._reset()

    def _drop_at(self, address: int) -> None:
        """The last file's rows at ``address`` (gdb ends that file's run there)."""
        if self.last_file is None:
            return
        t = self.t
        while t.addrs and t.addrs[-1] == address and t.file_of[-1] == self.last_file \
                and not t.flags[-1] & END_SEQUENCE:
            t.addrs.pop()
            t.file_of.pop()
            t.lines.pop()
            t.flags.pop()

    def _track_stmt(self) -> None:
        if self.last_address != self.address:
            self.stmt_at_address = False
            self.last_address = self.address
        self.stmt_at_address |= bool(self.stmt)


def _sort(t: LineTable) -> None:
    """Rows in address order; a sequence's rows keep their order, and an end-of-sequence
    row sorts before rows of another sequence starting at its address."""
    n = len(t.addrs)
    if all(t.addrs[i] <= t.addrs[i + 1] for i in range(n - 1)):
        return
    order = sorted(range(n), key=lambda i: (t.addrs[i], 0 if t.flags[i] & END_SEQUENCE else 1, i))
    t.addrs = [t.addrs[i] for i in order]
    t.file_of = [t.file_of[i] for i in order]
    t.lines = [t.lines[i] for i in order]
    t.flags = [t.flags[i] for i in order]


def _find_nul(data: Any, start: int, stop: int) -> int:
    """Where the string at ``start`` ends (mmap has find, not index)."""
    at = data.find(b"\0", start, stop)
    if at < 0:
        raise IndexError("unterminated string")
    return at


def _sleb(d: Any, p: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = d[p]
        p += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, p
        if shift > 63:
            raise IndexError("LEB128 too long")
