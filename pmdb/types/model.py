"""The one type model every type source (DWARF, BTF, CTF) produces.

Types are built lazily: a source may create a Type with a ``loader`` that fills
in members/target/enumerators on first access, so opening a dump never walks a
whole type graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

# kinds: void int float bool pointer array struct union enum typedef func qual


@dataclass(eq=False)
class Member:
    """A struct or union member: its name, type and bit offset."""

    name: str            # "" for an anonymous struct/union member
    type: Type
    bit_offset: int
    bit_size: int = 0    # non-zero for a bitfield

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


@dataclass(eq=False)
class Type:
    """A C type, whichever debug format it came from."""

    kind: str
    name: str = ""
    size: int = 0
    signed: bool = False
    count: int | None = None                 # arrays; None for a flexible array
    qualifier: str = ""                      # "const" / "volatile" / "restrict" for kind "qual"
    _target: Type | None = None
    _members: list[Member] | None = None
    _enumerators: list[tuple[str, int]] | None = None
    params: list[Type] = field(default_factory=list)
    variadic: bool = False
    loader: Callable[[Type], None] | None = field(default=None, repr=False)

    def _load(self) -> None:
        if self.loader is not None:
            load, self.loader = self.loader, None
            load(self)

    @property
    def target(self) -> Type | None:
        self._load()
        return self._target

    @target.setter
    def target(self, value: Type | None) -> None:
        self._target = value

    @property
    def members(self) -> list[Member]:
        self._load()
        return self._members or []

    @members.setter
    def members(self, value: list[Member]) -> None:
        self._members = value

    @property
    def enumerators(self) -> list[tuple[str, int]]:
        self._load()
        return self._enumerators or []

    @enumerators.setter
    def enumerators(self, value: list[tuple[str, int]]) -> None:
        self._enumerators = value

    # -- navigation -------------------------------------------------------

    def strip(self) -> Type:
        """Without typedefs and qualifiers: the type the bytes really have."""
        t: Type = self
        for _ in range(64):
            if t.kind in ("typedef", "qual") and t.target is not None:
                t = t.target
            else:
                break
        return t

    def sizeof(self) -> int:
        t = self.strip()
        if t.kind == "array":
            elem = t.target
            return (t.count or 0) * (elem.sizeof() if elem else 0)
        return t.size

    def find_member(self, name: str) -> tuple[Member, int] | None:
        """The member called name and its bit offset from the start, looking into
        anonymous structs/unions as C does."""
        t = self.strip()
        for m in t.members:
            if m.name == name:
                return m, m.bit_offset
            if not m.name and m.type.strip().kind in ("struct", "union"):
                inner = m.type.find_member(name)
                if inner is not None:
                    return inner[0], m.bit_offset + inner[1]
        return None

    def is_integer(self) -> bool:
        return self.strip().kind in ("int", "bool", "enum")

    def is_pointer(self) -> bool:
        return self.strip().kind == "pointer"

    def is_aggregate(self) -> bool:
        return self.strip().kind in ("struct", "union", "array")

    def __str__(self) -> str:
        return type_name(self)


def type_name(t: Type, inner: str = "") -> str:
    """C spelling of a type: ``struct node *``, ``uint64_t [4]``, ``int (*)(void)``."""
    k = t.kind
    if k == "pointer":
        tgt = t.target
        if tgt is not None and tgt.strip().kind in ("array", "func") and tgt.kind not in ("typedef",):
            return type_name(tgt, f"(*{inner})")
        base = type_name(tgt) if tgt is not None else "void"
        return f"{base} *{inner}".rstrip() if not base.endswith("*") else f"{base}*{inner}".rstrip()
    if k == "array":
        dim = "" if t.count is None else str(t.count)
        tgt = t.target
        return type_name(tgt, f"{inner}[{dim}]") if tgt else f"? {inner}[{dim}]"
    if k == "func":
        ret = type_name(t.target) if t.target is not None else "void"
        args = ", ".join(type_name(p) for p in t.params) or "void"
        if t.variadic:
            args += ", ..."
        return f"{ret} {inner}({args})" if inner else f"{ret} ({args})"
    if k == "qual":
        base = type_name(t.target) if t.target is not None else "void"
        return f"{t.qualifier} {base}{' ' + inner if inner else ''}"
    if k in ("struct", "union", "enum"):
        base = f"{k} {t.name}" if t.name else f"{k} <anonymous>"
    elif k == "void":
        base = "void"
    else:
        base = t.name or k
    return f"{base} {inner}" if inner else base


VOID = Type("void", "void", 0)


class TypeSource(Protocol):
    """What a debug-info reader provides to the registry."""

    def find_type(self, name: str, kind: str | None = None) -> Type | None:
        """A named type; kind is "struct"/"union"/"enum" for tagged names, None otherwise."""

    def type_names(self) -> Iterable[str]:
        """Names for completion (tagged ones spelled ``struct x``)."""

    def variable_type(self, name: str) -> Type | None:
        """The declared type of a global variable, when the source knows it."""
