"""``::printf``: members of a typed object through a printf format, with mdb's conversions."""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError
from pmdb.format_lines import radix_text
from pmdb.formats import c_escape
from pmdb.types.value import Object, follow_path, take_type

from .types import lookup_type, pointer_text

_SPEC = re.compile(r"%([-+#0 ]*)(\d*)(?:\.(\d+))?(?:hh|h|ll|l|j|z|t)?([a-zA-Z%])")
_NO_ARG = "%"


@dcmd("printf", addr="required", synopsis="print members of a typed object through a format",
      example='::walk task | ::printf "%d %s\\n" struct task_struct pid comm',
      usage="format type member ...")
def printf_cmd(ctx: Context, fmt: str, *args: Any) -> None:
    """Each conversion of the format takes the next member (a path such as ``a.b[2]``; ``.``
    is the object itself). mdb's conversions: %d %i %u %x %X %o %q (signed octal) %r %R (the
    default radix, unsigned and signed) %c %s (a char array or pointer) %a (symbol+offset)
    %p %e (an enum's name) %H (a size, 1.5K) %I (an IPv4 address) %Y (a time) and %%;
    flags ``-0#+`` and a width work as in C; in a "..." format C's escapes (``\\n``) are
    undone, as in any double-quoted argument."""
    spelling, members = take_type(list(args))
    if not spelling:
        raise CommandError("printf: usage: addr::printf format type member ...")
    obj = Object(ctx.target.memory, lookup_type(ctx, spelling), ctx.require_addr())
    values = [obj if str(m) == "." else follow_path(obj, str(m)) for m in members]
    out, pos, used = [], 0, 0
    text = str(fmt)
    for m in _SPEC.finditer(text):
        out.append(text[pos:m.start()])
        pos = m.end()
        flags, width, conv = m.group(1), m.group(2), m.group(4)
        if conv == _NO_ARG:
            out.append("%")
            continue
        if used >= len(values):
            raise CommandError(f"printf: the format has more conversions than the {len(values)} "
                               "member(s) given")
        body = _convert(ctx, conv, values[used], "#" in flags)
        used += 1
        out.append(_pad(body, flags, int(width or 0)))
    out.append(text[pos:])
    if used < len(values):
        raise CommandError(f"printf: {len(values) - used} member(s) left over by the format")
    ctx.out.write("".join(out))


def _convert(ctx: Context, conv: str, obj: Object, alt: bool) -> str:
    if conv == "s":
        raw = obj.string() if obj.kind in ("pointer", "array") else b""
        return raw.decode("utf-8", "backslashreplace")
    if conv == "e" and obj.kind == "enum":
        value = int(obj)
        for name, v in obj.type.strip().enumerators:
            if v == value:
                return name
        return str(value)
    value = int(obj)
    size = max(obj.type.sizeof(), 1)
    unsigned = value & ((1 << (8 * size)) - 1)
    signed = unsigned - (1 << (8 * size)) if unsigned >> (8 * size - 1) else unsigned
    simple = {
        "d": str(signed), "i": str(signed), "u": str(unsigned),
        "x": f"{unsigned:#x}" if alt else f"{unsigned:x}",
        "X": f"{unsigned:#X}" if alt else f"{unsigned:X}",
        "o": f"0{unsigned:o}" if alt and unsigned else f"{unsigned:o}",
        "q": ("-" if signed < 0 else "") + f"{abs(signed):o}",
        "r": radix_text(unsigned, ctx.radix, show_base=alt),
        "R": ("-" if signed < 0 else "") + radix_text(abs(signed), ctx.radix, show_base=alt),
        "c": c_escape(bytes([unsigned & 0xFF])) if alt else chr(unsigned & 0xFF),
        "p": f"{unsigned:#x}",
    }
    if conv in simple:
        return simple[conv]
    if conv == "a":
        return pointer_text(ctx, unsigned)
    if conv == "H":
        return _human(unsigned)
    if conv == "I":
        return str(ipaddress.IPv4Address(unsigned.to_bytes(4, "little") if size == 4 else unsigned))
    if conv == "Y":
        return datetime.datetime.fromtimestamp(signed, datetime.UTC).strftime("%Y %b %d %H:%M:%S")
    raise CommandError(f"printf: unknown conversion '%{conv}'")


def _human(n: int) -> str:
    """mdb's %H: a size with K, M, G ... and one decimal when it is short."""
    for unit in ("", "K", "M", "G", "T", "P", "E"):
        if n < 1024 or unit == "E":
            return f"{n:.1f}{unit}".replace(".0", "") if unit else str(int(n))
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def _pad(text: str, flags: str, width: int) -> str:
    if len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and text.lstrip("-").isalnum():
        sign = "-" if text.startswith("-") else ""
        return sign + text.lstrip("-").rjust(width - len(sign), "0")
    return text.rjust(width)
