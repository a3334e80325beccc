"""A type's C definition as gdb's ``ptype`` prints it, which crash's ``struct``, ``union``
and ``whatis`` show: members four columns deeper per level, anonymous structs and unions
spelled out in place, bitfields as ``type name : bits;``, optionally each member's byte
offset in brackets (crash's ``-o``).
"""

from __future__ import annotations

from pmdb.types.model import Member, Type, type_name

INDENT = 4


def definition(t: Type, *, offsets: bool = False, base: int | None = None) -> list[str]:
    """The lines of ``struct NAME { ... }`` for a struct or union (an enum lists its values);
    other types are their one-line spelling. ``offsets`` puts ``[OFF]`` before each member
    (``base`` set: the member's address, as crash's ``-o`` with an address does)."""
    s = t.strip()
    if s.kind == "enum":
        values = ", ".join(f"{name}" + ("" if v == i else f" = {v}")
                           for i, (name, v) in enumerate(s.enumerators))
        return [f"{type_name(s)} {{{values}}}"]
    if s.kind not in ("struct", "union"):
        return [type_name(t)]
    width = _offset_width(s, base) if offsets else 0
    return [f"{type_name(s)} {{", *_body(s, 1, 0, offsets, base, width), "}"]


def _offset_width(t: Type, base: int | None) -> int:
    top = (base or 0) + max(t.sizeof(), 1)
    return len(f"[{top:x}]" if base is not None else f"[{top}]")


def _body(t: Type, depth: int, at: int, offsets: bool, base: int | None, width: int) -> list[str]:
    lines = []
    for m in t.members:
        off = at + m.bit_offset // 8
        lines += _member(m, depth, off, offsets, base, width)
    return lines


def _member(m: Member, depth: int, off: int, offsets: bool, base: int | None, width: int) -> list[str]:
    pad = " " * (INDENT * depth)
    if offsets:
        label = f"[{base + off:x}]" if base is not None else f"[{off}]"
        pad = "  " + " " * (INDENT * (depth - 1)) + label.rjust(width) + " "
    mt = m.type.strip()
    if not m.name and mt.kind in ("struct", "union"):
        inner = _body(mt, depth + 1, off, offsets, base, width)
        close = " " * (INDENT * depth) + "};"
        opener = f"{mt.kind} {mt.name + ' ' if mt.name else ''}{{"
        return [pad + opener, *inner, close]
    decl = type_name(m.type, m.name)
    if m.bit_size:
        decl += f" : {m.bit_size}"
    return [f"{pad}{decl};"]
