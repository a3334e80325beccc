"""Several fields of one structure, unpacked from its bytes in one call.

A kernel walk reads a structure, then a handful of its fields, once per object: every
kmem_cache, every CPU's kmem_cache_cpu, every slab. A slice and an ``int.from_bytes`` per
field cost ~0.5 us each; one ``struct.unpack_from`` of a format made once from the fields'
offsets and sizes costs about that for all of them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from pmdb.errors import FormatError
from pmdb.types.model import Type
from pmdb.types.value import path_offset

_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


class FieldGroup:
    """Named unsigned fields (offset, size in bytes) of one structure, read together."""

    def __init__(self, fields: Mapping[str, tuple[int, int]], byteorder: str = "little") -> None:
        placed = sorted(fields.items(), key=lambda item: item[1][0])
        fmt, at = ["<" if byteorder == "little" else ">"], 0
        for name, (offset, size) in placed:
            if offset < at or size not in _CODES:
                raise FormatError(f"field {name} ({size} bytes at {offset}) overlaps another "
                                  f"or is not a whole number")
            fmt.append(f"{offset - at}x{_CODES[size]}" if offset > at else _CODES[size])
            at = offset + size
        self.names = tuple(name for name, _ in placed)
        self.size = at                  # bytes a read must cover
        self._format = struct.Struct("".join(fmt))

    def unpack(self, raw: bytes | memoryview, at: int = 0) -> dict[str, int]:
        """Each field's value, from the structure's bytes starting at ``at``."""
        return dict(zip(self.names, self._format.unpack_from(raw, at), strict=True))


def member_field(t: Type, path: str) -> tuple[int, int]:
    """(byte offset, byte size) of a member path of t (not a bitfield)."""
    bit_off, member, bit_size = path_offset(t, path)
    if bit_off % 8 or (bit_size and bit_size != member.sizeof() * 8):
        raise FormatError(f"{t} member {path} is a bitfield")
    return bit_off // 8, member.sizeof()
