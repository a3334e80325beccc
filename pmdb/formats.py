"""mdb's format verbs: ``addr/fmt`` reads memory, ``value=fmt`` formats a value.

A format is a list of (count, character) pairs (``4X2K`` -> [(4,'X'), (2,'K')];
counts are decimal, as in mdb). Each character has the size and printf-like
layout mdb gives it (left-justified columns of 8 or 16), so output lines up
like mdb's: a ``sym:`` line when the address is a symbol, then a
``sym+off:`` label padded to column 16, then the values, wrapping at 80
columns. Reads go through the target's AddressSpace, so byte order is the
target's (big-endian on SPARC). When the stage pipes on, the values read are
handed to the next stage instead of printed (``g_table/K | ::print ...``).
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pmdb.errors import CommandError, LimitError
from pmdb.format_lines import LINE_WIDTH, FormatLines, bit_diagram

if TYPE_CHECKING:
    from pmdb.commands.context import Context
    from pmdb.memory.space import AddressSpace
    from pmdb.target import Target

LABEL_COLUMN = 16
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class IntFormat:
    """A format character that prints one integer per item."""

    size: int              # bytes; 0 means the pointer size
    signed: bool
    base: int
    width: int
    alt: bool = False      # C's '#': octal gets a leading 0
    swap: bool = False     # print with the bytes reversed


INT_FORMATS: dict[str, IntFormat] = {
    "B": IntFormat(1, False, 16, 8),
    "x": IntFormat(2, False, 16, 8),
    "X": IntFormat(4, False, 16, 16),
    "J": IntFormat(8, False, 16, 16),
    "K": IntFormat(0, False, 16, 16),
    "b": IntFormat(1, False, 8, 8, alt=True),
    "o": IntFormat(2, False, 8, 8, alt=True),
    "O": IntFormat(4, False, 8, 16, alt=True),
    "G": IntFormat(8, False, 8, 23),
    "q": IntFormat(2, True, 8, 8, alt=True),
    "Q": IntFormat(4, True, 8, 16, alt=True),
    "g": IntFormat(8, True, 8, 24),
    "v": IntFormat(1, True, 10, 8),
    "V": IntFormat(1, False, 10, 8),
    "d": IntFormat(2, True, 10, 8),
    "u": IntFormat(2, False, 10, 8),
    "D": IntFormat(4, True, 10, 16),
    "U": IntFormat(4, False, 10, 16),
    "e": IntFormat(8, True, 10, 21),
    "E": IntFormat(8, False, 10, 21),
    "R": IntFormat(8, False, 2, 64),
    "h": IntFormat(2, False, 16, 8, swap=True),
    "H": IntFormat(4, False, 16, 16, swap=True),
}

# every character ::formats lists, with mdb's description
DESCRIPTIONS: dict[str, str] = {
    "+": "increment dot by the count",
    "-": "decrement dot by the count",
    "^": "decrement dot by the last increment times the count",
    "a": "dot as symbol+offset",
    "B": "hexadecimal, 1 byte",
    "b": "octal, 1 byte",
    "C": "character using C character notation (1 byte)",
    "c": "character (1 byte)",
    "D": "signed decimal, 4 bytes",
    "d": "signed decimal, 2 bytes",
    "E": "unsigned decimal, 8 bytes",
    "e": "signed decimal, 8 bytes",
    "F": "double, 8 bytes",
    "f": "float, 4 bytes",
    "G": "octal, 8 bytes",
    "g": "signed octal, 8 bytes",
    "H": "hexadecimal with bytes swapped, 4 bytes",
    "h": "hexadecimal with bytes swapped, 2 bytes",
    "I": "address and disassembled instruction",
    "i": "disassembled instruction",
    "J": "hexadecimal, 8 bytes",
    "j": "binary with each set bit labelled, 8 bytes",
    "K": "hexadecimal uintptr_t (pointer size)",
    "N": "newline",
    "n": "newline",
    "O": "octal, 4 bytes",
    "o": "octal, 2 bytes",
    "P": "pointer as symbol+offset (pointer size)",
    "p": "pointer as symbol+offset (pointer size)",
    "Q": "signed octal, 4 bytes",
    "q": "signed octal, 2 bytes",
    "R": "binary, 8 bytes",
    "r": "whitespace (count spaces)",
    "S": "string using C string notation",
    "s": "raw string",
    "T": "horizontal tab",
    "t": "horizontal tab",
    "U": "unsigned decimal, 4 bytes",
    "u": "unsigned decimal, 2 bytes",
    "V": "unsigned decimal, 1 byte",
    "v": "signed decimal, 1 byte",
    "X": "hexadecimal, 4 bytes",
    "x": "hexadecimal, 2 bytes",
    "Y": "decoded time32_t (UTC)",
    "y": "decoded time64_t (UTC)",
}


# mdb's formats that write to memory or search it: pmdb only reads dumps
WRITE_OR_MATCH = {"W": "writes 4 bytes", "Z": "writes 8 bytes", "w": "writes 2 bytes",
                  "L": "matches 4 bytes", "M": "matches 8 bytes", "l": "matches 2 bytes"}


def parse_format(fmt: str) -> list[tuple[int, str]]:
    """``4X2K`` -> [(4, 'X'), (2, 'K')]; counts are decimal as in mdb."""
    items: list[tuple[int, str]] = []
    count = ""
    for ch in fmt:
        if ch.isascii() and ch.isdigit():
            count += ch
            continue
        if ch in WRITE_OR_MATCH:
            raise CommandError(f"format character '{ch}' {WRITE_OR_MATCH[ch]} in mdb's write and "
                               "match verbs; pmdb only reads dumps")
        if ch not in DESCRIPTIONS:
            raise CommandError(f"unknown format character '{ch}' in '{fmt}' (::formats lists them)")
        items.append((int(count) if count else 1, ch))
        count = ""
    if count:
        raise CommandError(f"format '{fmt}' ends with a count but no format character")
    return items


class _Source:
    """Where values come from: target memory (``/``) or the value itself (``=``)."""

    def __init__(self, target: Target | None, value: int | None, byteorder: Literal["little", "big"],
                 max_read: int | None = None) -> None:
        self.target = target
        self.value = value
        self.byteorder = byteorder
        self.left = max_read           # bytes this command may still read (limits.max_read_bytes)
        self.max_read = max_read

    def _spend(self, n: int) -> None:
        if self.left is not None:
            self.left -= n
            if self.left < 0:
                raise LimitError("limits.max_read_bytes", self.max_read or 0, "bytes read")

    def raw(self, addr: int, n: int) -> bytes:
        if self.value is not None:
            # the value's low n bytes, laid out as the target would store them
            return (self.value & ((1 << (8 * n)) - 1)).to_bytes(n, self.byteorder)
        self._spend(n)
        return self.memory(addr).read(addr, n)

    def integer(self, addr: int, size: int, signed: bool) -> int:
        if self.value is not None:
            v = self.value & ((1 << (8 * size)) - 1)
            return v - (1 << (8 * size)) if signed and v >> (8 * size - 1) else v
        self._spend(size)
        return int.from_bytes(self.memory(addr).read(addr, size), self.byteorder, signed=signed)

    def cstring(self, addr: int) -> bytes:
        if self.value is not None:
            raise CommandError("'=' cannot format a string: use '/' to read memory")
        raw = self.memory(addr).cstring(addr)
        self._spend(len(raw) + 1)
        return raw

    def memory(self, addr: int) -> AddressSpace:
        """Where addr is read: a user address in the current task's context (Target.memory_for)."""
        if self.target is None:
            raise CommandError("no target is open: reading memory needs a dump (pmdb DUMP)")
        return self.target.memory_for(addr)


@dataclass
class _State:
    """One ``addr/fmt`` run: where it reads, what it prints, and the repeat so far."""

    ctx: Context
    src: _Source
    out: FormatLines
    ptr_size: int
    addr: int
    reading: bool                      # '/' and '?': items advance through memory
    incr: int = 0


def run_format(ctx: Context, op: str, fmt: str, addr: int) -> int:
    """Run one format verb at addr; the address where a repeat continues."""
    items = parse_format(fmt)
    target = ctx.target if ctx.has_target else None
    reading = op in "/?"
    byteorder: Literal["little", "big"] = "big" if target is not None and target.memory.byteorder == "big" else "little"
    ptr_size = target.arch.ptr_size if target is not None else 8
    src = _Source(target, None if reading else addr, byteorder, ctx.config.get("limits.max_read_bytes"))
    # a format that labels its own lines ('a') starts them at column 0, as in mdb
    indent = 0 if "a" in fmt else LABEL_COLUMN
    max_lines = ctx.config.get("limits.max_lines")
    # piped, the values go on as addresses and the text is dropped as it is made
    lines = FormatLines(indent, _discard if ctx.piped else ctx.out.write, None if ctx.piped else max_lines)
    state = _State(ctx, src, lines, ptr_size, addr, reading)
    if reading and not ctx.piped and not fmt.startswith(("ai", "ia")):
        _label(state, target)
    repeats = max(ctx.count, 1) if ctx.count_given else 1
    # a repetition that neither reads nor prints ('+', '-', a 0 count) meets no other limit
    cap, idle = ctx.config.get("limits.max_items"), 0
    try:
        for _ in range(repeats):
            # piped, text is dropped: only reading counts as doing something
            before = (src.left,) if ctx.piped else (lines.fields, lines.ended, src.left)
            for count, ch in items:
                _one(state, count, ch)
            if ((src.left,) if ctx.piped else (lines.fields, lines.ended, src.left)) == before:
                idle += 1
                if idle >= cap:
                    raise LimitError("limits.max_items", cap, "repetitions of a format that neither "
                                                               "reads nor prints")
    finally:
        # on a fault, what was read so far still shows (mdb stops at the first bad read too)
        if state.out.fields and not ctx.piped:
            ctx.out.write(state.out.text())
    return state.addr


def _discard(text: str) -> None:
    pass


def _label(state: _State, target: Target | None) -> None:
    """mdb's header: ``sym:`` alone when addr is exactly a symbol, then ``sym+off:`` to column 16."""
    addr = state.addr
    if target is not None:
        hit = target.symbols.resolve(addr)
        if hit is not None and hit[1] == 0:
            state.out.cur = f"{target.symbols.describe(addr)}:"
            state.out.newline()
        name = target.symbols.describe(addr) if hit is not None else f"{addr:#x}"
    else:
        name = f"{addr:#x}"
    state.out.cur = f"{name}:"
    state.out.tab()


def _one(state: _State, count: int, ch: str) -> None:
    spec = INT_FORMATS.get(ch)
    if spec is not None:
        _integers(state, count, spec)
        return
    handler = _SPECIAL.get(ch)
    if handler is None:
        raise CommandError(f"format character '{ch}' is not supported here")
    handler(state, count)


def _integers(state: _State, count: int, spec: IntFormat) -> None:
    size = spec.size or state.ptr_size
    width = spec.width if spec.size or size == 8 else 16
    for _ in range(count):
        if spec.swap:
            raw = state.src.raw(state.addr, size)
            value = int.from_bytes(raw, "big" if state.src.byteorder == "little" else "little")
        else:
            value = state.src.integer(state.addr, size, spec.signed)
        _emit(state, value & MASK64)
        text = _render_int(value, spec)
        # mdb widens a 16-digit hex value by one column so columns never touch
        state.out.field(text, width + 1 if spec.base == 16 and len(text) >= width else width)
        _advance(state, size)


def _render_int(value: int, spec: IntFormat) -> str:
    neg = value < 0
    mag = -value if neg else value
    if spec.base == 16:
        digits = f"{mag:x}"
    elif spec.base == 8:
        digits = f"{mag:o}"
        if spec.alt and mag:
            digits = "0" + digits
    elif spec.base == 2:
        digits = f"{mag:b}"
    else:
        digits = str(mag)
    return ("-" if neg else "") + digits


def _emit(state: _State, value: int) -> None:
    if state.ctx.piped:
        state.ctx.emit(value)


def _advance(state: _State, n: int) -> None:
    if state.reading:
        state.addr = (state.addr + n) & MASK64
        state.incr += n


# -- special characters ---------------------------------------------------------------

def _pointer(state: _State, count: int) -> None:
    target = state.src.target
    for _ in range(count):
        value = state.src.integer(state.addr, state.ptr_size, False)
        _emit(state, value)
        text = _symbolic(target, value)
        # mdb's %-16a, widened so a 64-bit 0x... value keeps a blank after it (three a line)
        state.out.field(text, max(16, 2 * state.ptr_size + 3))
        _advance(state, state.ptr_size)


def _symbolic(target: Target | None, value: int) -> str:
    """sym+off when value lies in a symbol; plain hex otherwise (and always for NULL)."""
    hit = target.symbols.resolve(value) if target is not None and value else None
    if hit is None:
        return f"{value:#x}"
    sym, off = hit
    # a sizeless symbol (an ABS version name, a label) only names addresses right at it
    if not (sym.size and sym.contains(value)) and off >= 0x100:
        return f"{value:#x}"
    assert target is not None
    return target.symbols.describe(value)


def _dot(state: _State, count: int) -> None:
    label = _symbolic(state.src.target, state.addr if state.reading else state.src.value or 0)
    # like t and r, at most a line's worth: piped, its text meets no output limit
    for _ in range(min(count, LINE_WIDTH)):
        state.out.field(f"{label}:", 16)
        state.out.tab()


def _string(state: _State, count: int, escaped: bool) -> None:
    parts = []
    for _ in range(count):
        raw = state.src.cstring(state.addr)
        parts.append(c_escape(raw) if escaped else raw.decode("utf-8", "backslashreplace"))
        _advance(state, len(raw) + 1)
    state.out.raw("\\0".join(parts))


def _chars(state: _State, count: int, escaped: bool) -> None:
    for _ in range(count):
        byte = state.src.integer(state.addr, 1, False)
        _emit(state, byte)
        state.out.raw(c_escape(bytes([byte])) if escaped else chr(byte))
        _advance(state, 1)


def _instructions(state: _State, count: int, with_addr: bool) -> None:
    from pmdb.disasm import disassembler_for

    if not state.reading or state.src.target is None:
        raise CommandError("'i' and 'I' disassemble memory: use '/' with an open target")
    dis = disassembler_for(state.src.target)
    for _ in range(count):
        insn = dis.decode(state.addr)
        _emit(state, insn.address)
        text = dis.text(insn)
        state.out.raw(f"{insn.address:x}: {text}" if with_addr else text)
        state.out.newline()
        _advance(state, insn.size)


def _floats(state: _State, count: int, size: int) -> None:
    code = "f" if size == 4 else "d"
    order = "<" if state.src.byteorder == "little" else ">"
    for _ in range(count):
        (value,) = struct.unpack(order + code, state.src.raw(state.addr, size))
        state.out.field(f"{value:e}" if size == 4 else f"{value:g}", 0)        # mdb: %e and %g, no width
        _advance(state, size)


def _times(state: _State, count: int, size: int) -> None:
    for _ in range(count):
        value = state.src.integer(state.addr, size, True)
        try:
            when = datetime.datetime.fromtimestamp(value, datetime.UTC)
            text = when.strftime("%Y %b %d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            text = f"{value:#x}"
        state.out.field(text, 24)
        _advance(state, size)


def _bits(state: _State, count: int) -> None:
    for _ in range(count):
        value = state.src.integer(state.addr, 8, False)
        _emit(state, value)
        for line in bit_diagram(value):
            state.out.raw(line)
            state.out.newline()
        _advance(state, 8)


def _move(state: _State, delta: int) -> None:
    state.addr = (state.addr + delta) & MASK64
    if not state.reading and state.src.value is not None:
        state.src.value = state.addr


def _newlines(state: _State, count: int) -> None:
    # piped, the lines are dropped and not limited: the count is still bounded by the limit
    limit = state.out.limit if state.out.limit is not None else state.ctx.config.get("limits.max_lines")
    for _ in range(count if limit is None else min(count, limit + 1)):
        state.out.newline()


_SPECIAL: dict[str, Callable[[_State, int], None]] = {
    "p": _pointer,
    "P": _pointer,
    "a": _dot,
    "s": lambda st, n: _string(st, n, False),
    "S": lambda st, n: _string(st, n, True),
    "c": lambda st, n: _chars(st, n, False),
    "C": lambda st, n: _chars(st, n, True),
    "i": lambda st, n: _instructions(st, n, False),
    "I": lambda st, n: _instructions(st, n, True),
    "f": lambda st, n: _floats(st, n, 4),
    "F": lambda st, n: _floats(st, n, 8),
    "Y": lambda st, n: _times(st, n, 4),
    "y": lambda st, n: _times(st, n, 8),
    "n": _newlines,
    # a run of spaces or a tab stop wider than a line is one line wide (not a 1e9-space field)
    "r": lambda st, n: st.out.raw(" " * min(n, LINE_WIDTH)),
    "t": lambda st, n: st.out.tab(min(n, LINE_WIDTH)),
    "T": lambda st, n: st.out.tab(min(n, LINE_WIDTH)),
    "N": _newlines,
    "j": _bits,
    "+": lambda st, n: _move(st, n),
    "-": lambda st, n: _move(st, -n),
    "^": lambda st, n: _move(st, -st.incr * n),
}

_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f", 0x0D: "\\r",
            0x22: '\\"', 0x27: "\\'", 0x5C: "\\\\", 0x00: "\\0"}


def c_escape(data: bytes) -> str:
    """C notation for bytes: printable ASCII as is, the usual escapes, else \\ooo."""
    out = []
    for b in data:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)

