"""Formatting typed Objects as gdb prints them (``set print pretty on``), which is what
crash's ``struct``, ``union``, ``p`` and ``list -s`` show.

The differences from mdb's ::print (pmdb.types.printer) are the ones a crash user
reads at a glance: integers in decimal, members two columns deeper per level and
separated by commas, NULL as ``0x0``, a function pointer as ``0xADDR <name>``, a
``char *`` followed by its string, char arrays as C strings with octal escapes, runs of
elements one by one (crash turns gdb's repeat folding off), enums by name.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.errors import CommandError, FaultError
from pmdb.types.model import Type, type_name
from pmdb.types.printer import is_char
from pmdb.types.value import Object

INDENT = 2
ELEMENTS = 256          # gdb's "print elements", as crash sets it: array elements shown
CHAR_ELEMENTS = 512     # a char array's bytes: gdb 10 under crash shows twice print elements

Describe = Callable[[int], "str | None"]     # an address -> "name+off", or None


def gdb_value(obj: Object, describe: Describe, depth: int = 0) -> str:
    """The value of obj as gdb prints it, nested lines indented from ``depth``."""
    try:
        kind = obj.kind
        if kind in ("struct", "union"):
            return _aggregate(obj, describe, depth)
        if kind == "array":
            return _array(obj, describe, depth)
        return _scalar(obj, describe)
    except FaultError as err:
        return f"<error: Cannot access memory at address {err.address:#x}>"


def gdb_members(obj: Object, describe: Describe, depth: int = 1) -> list[str]:
    """``name = value,`` lines of each member (the body of a struct's braces)."""
    pad = " " * (INDENT * depth)
    lines = []
    for member, sub in obj.members():
        value = gdb_value(sub, describe, depth)
        lines.append(f"{pad}{member.name} = {value}" if member.name else pad + value)
    return lines


def gdb_struct(obj: Object, describe: Describe) -> str:
    """A whole struct or union as crash's ``struct TYPE ADDR`` prints it."""
    return f"{type_name(obj.type.strip())} " + _aggregate(obj, describe, 0)


def _aggregate(obj: Object, describe: Describe, depth: int) -> str:
    t = obj.type.strip()
    if not t.members:
        return "{<No data fields>}"      # an empty struct (kmap_ctrl without highmem)
    body = gdb_members(obj, describe, depth + 1)
    return "{\n" + ",\n".join(body) + "\n" + " " * (INDENT * depth) + "}"


def _array(obj: Object, describe: Describe, depth: int) -> str:
    t = obj.type.strip()
    elem, count = t.target, t.count or 0
    if count == 0:                       # a flexible array: gdb shows its address (and text)
        text = f"{obj.address:#x}"
        if is_char(elem):
            try:
                raw = obj.memory.cstring(obj.address, ELEMENTS).split(b"\0", 1)[0]
            except FaultError:
                return text
            text += " " + _quoted(raw)
        return text
    if is_char(elem):
        shown = min(count, CHAR_ELEMENTS)
        return _char_array(obj.memory.read(obj.address, shown), count > shown)
    shown = min(count, ELEMENTS)
    inner = depth + 1 if elem is not None and elem.strip().kind in ("struct", "union") else depth
    texts = [gdb_value(obj[i], describe, inner) for i in range(shown)]
    return "{" + ", ".join(texts) + ("..." if count > shown else "") + "}"


def _char_array(data: bytes, truncated: bool) -> str:
    """A char array as gdb shows it: one trailing NUL dropped, every byte shown (crash turns
    gdb's repeat folding off), ``...`` when print elements cut it."""
    if not truncated and data.endswith(b"\0"):
        data = data[:-1]
    return _quoted(data) + ("..." if truncated else "")


def _quoted(data: bytes) -> str:
    """Bytes as a C string literal, with gdb's escapes."""
    return '"' + "".join(_escape(c, quote=34) for c in data) + '"'


def _escape(c: int, quote: int) -> str:
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\033",
             92: "\\\\"}
    if c == quote:
        return "\\" + chr(c)
    if c in named:
        return named[c]
    return chr(c) if 32 <= c < 127 else f"\\{c:03o}"


def _scalar(obj: Object, describe: Describe) -> str:
    t = obj.type.strip()
    if t.kind == "pointer":
        return _pointer(obj, t, describe)
    if t.kind == "enum":
        value = int(obj)
        return obj.enum_name() or str(value)
    if t.kind == "bool":
        value = int(obj)
        return {0: "false", 1: "true"}.get(value, str(value))
    if t.kind == "float":
        return repr(obj.float_value())
    if t.kind == "int":
        value = int(obj)
        if is_char(t):
            return f"{value} '{_escape(value & 0xFF, quote=39)}'"
        return str(value)
    if t.kind == "func":
        name = describe(obj.address)
        return f"{{{type_name(obj.type)}}} {obj.address:#x}" + (f" <{name}>" if name else "")
    raise CommandError(f"cannot print a value of type {type_name(obj.type)}")


def _pointer(obj: Object, t: Type, describe: Describe) -> str:
    value = int(obj)
    text = f"{value:#x}"
    if value == 0:
        return text
    target = t.target.strip() if t.target is not None else None
    name = describe(value)
    if name:
        text += f" <{name}>"
    if is_char(target):
        try:
            raw = obj.memory.cstring(value, ELEMENTS).split(b"\0", 1)[0]
        except FaultError:
            return f"{text} <error: Cannot access memory at address {value:#x}>"
        return f"{text} {_quoted(raw)}"
    return text
