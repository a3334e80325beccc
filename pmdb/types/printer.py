"""Formatting typed Objects the way mdb's ::print does.

Structs open a brace and list one member per line (``name = value``), four
columns deeper per level; integers are hex, pointers symbolic (with the
string after a ``char *``), char arrays that hold text print as
``[ "text" ]``, other arrays as ``[ 0x1, 0x2 ]`` (arrays of structs one
element per line), enums as ``0t3 (NAME)``. A member that cannot be read
prints ``<unreadable ADDR>`` and the rest of the struct still prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pmdb.errors import CommandError, FaultError
from pmdb.types.model import Member, Type, type_name
from pmdb.types.value import Object

TAB = 4


def _plain_hex(addr: int) -> str:
    return _hex(addr)


@dataclass
class PrintOptions:
    show_types: bool = False          # -t
    show_addrs: bool = False          # -a
    array_limit: int = 100            # elements shown before ", ... ]"
    string_limit: int = 256           # longest char array shown as a string
    describe: Callable[[int], str] = field(default=_plain_hex)   # pointer -> "sym+off"
    decimal: bool = False             # -d: integers in decimal (0t...), signed ones with their sign


def _hex(v: int) -> str:
    return "0" if v == 0 else f"{v:#x}"


def _dec(v: int) -> str:
    return "0" if v == 0 else f"0t{v}"


def format_object(obj: Object, opts: PrintOptions | None = None, name: str | None = None) -> str:
    """One object as ::print shows it: the bare value, or ``name = value`` for a member."""
    opts = opts or PrintOptions()
    return _prefix(obj, name, opts, top=True) + _value(obj, 0, opts)


def _prefix(obj: Object, name: str | None, opts: PrintOptions, top: bool = False) -> str:
    parts = []
    if opts.show_addrs:
        parts.append(f"{obj.address:x}.{obj.bit_shift:x} " if obj.bit_shift else f"{obj.address:x} ")
    if opts.show_types:
        tname = type_name(obj.type)
        # mdb keeps "char *name" together, but puts a space after a bare top-level type
        parts.append(tname if (tname.endswith("*") and name) else tname + " ")
    if name is not None:
        parts.append(name)
        if obj.bit_size and opts.show_types:
            parts.append(f" :{obj.bit_size}")
        parts.append(" = ")
    return "".join(parts)


def _value(obj: Object, depth: int, opts: PrintOptions) -> str:
    try:
        kind = obj.kind
        if kind in ("struct", "union"):
            return _aggregate(obj, depth, opts)
        if kind == "array":
            return _array(obj, depth, opts)
        return _scalar(obj, opts)
    except FaultError as err:
        return f"<unreadable {err.address:#x}>"


def _aggregate(obj: Object, depth: int, opts: PrintOptions) -> str:
    t = obj.type.strip()
    if not t.members and t.size == 0:
        return f"<forward declaration of {type_name(t)}>"
    pad = " " * (TAB * (depth + 1))
    lines = ["{"]
    for member, sub in obj.members():
        lines.append(pad + _member_line(member, sub, depth + 1, opts))
    lines.append(" " * (TAB * depth) + "}")
    return "\n".join(lines)


def _member_line(member: Member, sub: Object, depth: int, opts: PrintOptions) -> str:
    # an anonymous struct/union member shows its members in a bare block, as C reads them
    name = member.name if member.name else None
    return _prefix(sub, name, opts) + _value(sub, depth, opts)


def is_char(t: Type | None) -> bool:
    if t is None:
        return False
    s = t.strip()
    return s.kind == "int" and s.size == 1 and "char" in s.name


def _array(obj: Object, depth: int, opts: PrintOptions) -> str:
    t = obj.type.strip()
    elem = t.target
    count = t.count or 0
    if is_char(elem) and 0 < count <= opts.string_limit:
        data = obj.memory.read(obj.address, count)
        text = data.split(b"\0", 1)[0]
        if text and all(32 <= c < 127 for c in text):
            return '[ "' + text.decode("ascii") + '" ]'
    limit = min(count, opts.array_limit)
    if limit == 0:
        return "[ ... ]"
    more = count > limit
    elements = [obj[i] for i in range(limit)]
    if elem is not None and elem.strip().kind in ("struct", "union"):
        pad = " " * (TAB * (depth + 1))
        body = [pad + _value(e, depth + 1, opts) + "," for e in elements]
        tail = " " * (TAB * depth) + ("... ]" if more else "]")
        return "\n".join(["[", *body, tail])
    inner = replace(opts, show_types=False, show_addrs=False)
    texts = [_value(e, depth + 1, inner) for e in elements]
    return "[ " + ", ".join(texts) + (", ... ]" if more else " ]")


def _scalar(obj: Object, opts: PrintOptions) -> str:
    t = obj.type.strip()
    if t.kind == "pointer":
        return _pointer(obj, opts)
    if t.kind == "enum":
        return _enum(obj, t)
    if t.kind == "float":
        return f"{obj.float_value():.7e}" if t.size in (2, 4, 8) else "??? (unsupported float size)"
    if t.kind in ("int", "bool"):
        value = int(obj)
        if obj.bit_size:
            return _dec(value) if (t.signed and value < 0) or opts.decimal else _hex(value)
        if is_char(t):
            return _char(value & 0xFF)
        if opts.decimal:
            return _dec(value)
        if value < 0:
            value &= (1 << (8 * t.size)) - 1
        return _hex(value)
    if t.kind == "func":
        return opts.describe(obj.address)
    if t.kind == "void":
        return "<void>"
    raise CommandError(f"cannot print a value of type {type_name(obj.type)}")


def _pointer(obj: Object, opts: PrintOptions) -> str:
    value = int(obj)
    if value == 0:
        return "0"
    text = opts.describe(value)
    target = obj.type.strip().target
    if is_char(target):
        try:
            # cstring's byte-by-byte fallback near a hole may keep the NUL: cut there
            s = obj.memory.cstring(value, opts.string_limit).split(b"\0", 1)[0]
        except FaultError:
            return text
        if s and all(32 <= c < 127 for c in s):
            text += ' "' + s.decode("ascii") + '"'
    return text


def _enum(obj: Object, t: Type) -> str:
    value = int(obj)
    name = obj.enum_name()
    values = [v for _, v in t.enumerators]
    # a flags enum (every value a single bit, some beyond 2) prints in hex as A|B, as mdb does
    flags = bool(values) and all(v >= 0 and v & (v - 1) == 0 for v in values) and max(values) >= 4
    if not flags:
        return f"{_dec(value)} ({name or '???'})"
    if name is None:
        names = [n for n, v in t.enumerators if v and value & v == v]
        missed = value & ~sum(set(values))
        name = "|".join(names + ([f"{missed:#x}"] if missed else [])) or "???"
    return f"{_hex(value)} ({name})"


def _char(c: int) -> str:
    escapes = {0: "\\0", 9: "\\t", 10: "\\n", 13: "\\r", 39: "\\'", 92: "\\\\"}
    if c in escapes:
        return f"'{escapes[c]}'"
    if 32 <= c < 127:
        return f"'{chr(c)}'"
    return f"'\\{c:03o}'"
