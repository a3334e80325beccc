"""Object: a typed value at an address, read lazily from an AddressSpace.

Nothing is read until a value is asked for, so walking ``obj.a.b[3]`` costs
no reads until ``int()``. Member paths as users type them (``a.b[2]->c``) are
parsed here too, so ::print, ::list and walkers agree on what they mean.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from typing import Any

from pmdb.errors import CommandError, FaultError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.types.model import Member, Type, type_name

_FLOAT_FORMATS = {4: "f", 8: "d", 2: "e"}


class Object:
    """A value of ``type`` at ``address`` (bitfields: ``bit_size`` bits, ``bit_shift`` into it)."""

    __slots__ = ("memory", "type", "address", "bit_shift", "bit_size")

    def __init__(self, memory: AddressSpace, type: Type, address: int, *,
                 bit_shift: int = 0, bit_size: int = 0) -> None:
        self.memory = memory
        self.type = type
        self.address = address
        self.bit_shift = bit_shift
        self.bit_size = bit_size

    def __repr__(self) -> str:
        return f"Object({type_name(self.type)!r} at {self.address:#x})"

    @property
    def kind(self) -> str:
        return self.type.strip().kind

    @property
    def size(self) -> int:
        return self.type.sizeof()

    # -- navigation -------------------------------------------------------------------

    def member(self, name: str) -> Object:
        """A struct/union member; through a pointer as ``->`` would (drgn does the same)."""
        base = self.deref() if self.kind == "pointer" else self
        t = base.type.strip()
        if t.kind not in ("struct", "union"):
            raise CommandError(f"{type_name(self.type)} is not a struct or union (member {name!r})")
        found = t.find_member(name)
        if found is None:
            raise SymbolError(f"{type_name(t)} has no member {name!r}")
        member, bit_off = found
        return base._at_member(member, bit_off)

    def _at_member(self, member: Member, bit_off: int) -> Object:
        if member.bit_size:
            return Object(self.memory, member.type, self.address + bit_off // 8,
                          bit_shift=bit_off % 8, bit_size=member.bit_size)
        return Object(self.memory, member.type, self.address + bit_off // 8)

    def members(self) -> Iterator[tuple[Member, Object]]:
        """Each member of a struct/union with its Object, in declaration order."""
        for m in self.type.strip().members:
            yield m, self._at_member(m, m.bit_offset)

    def __getattr__(self, name: str) -> Object:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.member(name)

    def __getitem__(self, index: int) -> Object:
        t = self.type.strip()
        if t.kind == "array":
            # a flexible array member (``[]``, or GNU ``[0]``: BTF and DWARF say 0 or no
            # length) indexes freely: how far it goes is known only to its owner, so reads
            # are bounded by what memory holds, not by the type
            flexible = not t.count
            if not 0 <= index or (not flexible and index >= (t.count or 0)):
                raise CommandError(f"index {index} out of range for {type_name(self.type)}")
            elem = t.target
            base = self.address
        elif t.kind == "pointer":
            elem = t.target
            base = int(self)
        else:
            raise CommandError(f"{type_name(self.type)} is not an array or pointer")
        if elem is None or elem.strip().kind in ("void", "func"):
            raise CommandError(f"cannot index {type_name(self.type)}")
        return Object(self.memory, elem, base + index * elem.sizeof())

    def deref(self) -> Object:
        t = self.type.strip()
        if t.kind != "pointer":
            raise CommandError(f"{type_name(self.type)} is not a pointer")
        target = t.target
        if target is None or target.strip().kind == "void":
            raise CommandError(f"cannot dereference {type_name(self.type)}")
        value = int(self)
        if value == 0:
            raise FaultError(0, max(target.sizeof(), 1), f"NULL {type_name(self.type)} at {self.address:#x}")
        return Object(self.memory, target, value)

    def cast(self, type: Type) -> Object:
        return Object(self.memory, type, self.address)

    # -- values -----------------------------------------------------------------------

    def read(self) -> bytes:
        return self.memory.read(self.address, self.size)

    def __int__(self) -> int:
        t = self.type.strip()
        if t.kind == "float":
            return int(self.float_value())
        if t.kind not in ("int", "bool", "enum", "pointer"):
            raise CommandError(f"{type_name(self.type)} is not an integer")
        if t.kind == "enum":
            t.enumerators  # noqa: B018 - loading them settles the enum's signedness
        if self.bit_size:
            return self._bitfield(t.signed)
        return self.memory.read_int(self.address, t.size, signed=t.signed)

    def __index__(self) -> int:
        return int(self)

    def _bitfield(self, signed: bool) -> int:
        nbytes = (self.bit_shift + self.bit_size + 7) // 8
        raw = int.from_bytes(self.memory.read(self.address, nbytes), self.memory.byteorder)
        if self.memory.byteorder == "little":
            value = raw >> self.bit_shift
        else:
            # big-endian bit offsets count from the most significant bit of the first byte
            value = raw >> (nbytes * 8 - self.bit_shift - self.bit_size)
        value &= (1 << self.bit_size) - 1
        if signed and value >> (self.bit_size - 1):
            value -= 1 << self.bit_size
        return value

    def float_value(self) -> float:
        t = self.type.strip()
        fmt = _FLOAT_FORMATS.get(t.size)
        if t.kind != "float" or fmt is None:
            raise CommandError(f"cannot read {type_name(self.type)} as a float")
        endian = "<" if self.memory.byteorder == "little" else ">"
        return struct.unpack(endian + fmt, self.memory.read(self.address, t.size))[0]

    def string(self, limit: int = 4096) -> bytes:
        """A char array's bytes up to its NUL, or the C string a char pointer points at."""
        t = self.type.strip()
        if t.kind == "array":
            n = t.count if t.count is not None else limit
            data = self.memory.read(self.address, min(n, limit))
            return data.split(b"\0", 1)[0]
        if t.kind == "pointer":
            return self.memory.cstring(int(self), limit)
        raise CommandError(f"{type_name(self.type)} is not a string")

    def enum_name(self) -> str | None:
        value = int(self)
        for name, v in self.type.strip().enumerators:
            if v == value:
                return name
        return None


# -- member paths ----------------------------------------------------------------------

_PATH_TOKEN = re.compile(r"\s*(?:(->)|(\.)|\[\s*([^\]]*?)\s*\]|([A-Za-z_]\w*))")


def parse_index(text: str) -> int:
    """An index as mdb reads it: hex by default, 0t decimal, 0x hex, 0o octal."""
    t = text.strip().lower()
    try:
        if t.startswith("0t"):
            return int(t[2:], 10)
        if t.startswith("0o"):
            return int(t[2:], 8)
        return int(t.removeprefix("0x"), 16)
    except ValueError:
        raise CommandError(f"bad array index {text!r}") from None


def split_path(path: str) -> list[tuple[str, str | int]]:
    """``a.b[2]->c`` -> [("member", "a"), ("member", "b"), ("index", 2), ("member", "c")]."""
    steps: list[tuple[str, str | int]] = []
    pos = 0
    text = path.strip()
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise CommandError(f"bad member path {path!r} at {text[pos:]!r}")
        pos = m.end()
        if m.group(3) is not None:
            steps.append(("index", parse_index(m.group(3))))
        elif m.group(4):
            steps.append(("member", m.group(4)))
    if not steps:
        raise CommandError(f"empty member path {path!r}")
    return steps


def follow_path(obj: Object, path: str) -> Object:
    """The Object a member path names, starting from obj."""
    for kind, step in split_path(path):
        if kind == "index":
            assert isinstance(step, int)
            obj = obj[step]
        else:
            assert isinstance(step, str)
            obj = obj.member(step)
    return obj


def readable(obj: Object) -> bool:
    try:
        obj.memory.read(obj.address, max(obj.size, 1))
    except FaultError:
        return False
    return True


def path_offset(type: Type, path: str) -> tuple[int, Type, int]:
    """(bit offset, type, bit size) of a member path within type, reading no memory:
    what ::offsetof and ::list need. A path through a pointer has no fixed offset."""
    bit_off, t, bit_size = 0, type, 0
    for kind, step in split_path(path):
        s = t.strip()
        if kind == "index":
            assert isinstance(step, int)
            if s.kind != "array" or s.target is None:
                raise CommandError(f"{type_name(t)} is not an array (in {path!r})")
            t = s.target
            bit_off += step * t.sizeof() * 8
            continue
        assert isinstance(step, str)
        if s.kind == "pointer":
            raise CommandError(f"{path!r} goes through a pointer: it has no fixed offset")
        if s.kind not in ("struct", "union"):
            raise CommandError(f"{type_name(t)} is not a struct or union (member {step!r})")
        found = s.find_member(step)
        if found is None:
            raise SymbolError(f"{type_name(s)} has no member {step!r}")
        member, off = found
        bit_off += off
        t, bit_size = member.type, member.bit_size
    return bit_off, t, bit_size


# -- type spellings, as dcmds and walkers take them -------------------------

_TAGS = ("struct", "union", "enum")
_BASE_WORDS = ("unsigned", "signed", "long", "short", "int", "char", "double", "float",
               "const", "volatile")
_TYPE_SUFFIX = re.compile(r"^\**(\[\d*\])*$")   # "*", "**", "[4]", "*[4]" after a type name


def take_type(args: list[Any]) -> tuple[str, list[Any]]:
    """Split a type spelling off the front of args: ``struct node *`` is three words, as in mdb."""
    if not args:
        raise CommandError("a type name is needed")
    words = [str(a) for a in args]
    if words[0] in _TAGS:
        if len(words) < 2:
            raise CommandError(f"'{words[0]}' needs a tag name")
        n = 2
    else:
        n = 1
        while words[n - 1] in _BASE_WORDS and n < len(words) and words[n] in _BASE_WORDS:
            n += 1
    while n < len(words) and _TYPE_SUFFIX.match(words[n]):
        n += 1
    return " ".join(words[:n]), list(args[n:])
