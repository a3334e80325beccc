"""TypeRegistry: parse a C type spelling and ask each source in turn."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pmdb.errors import SymbolError
from pmdb.types.model import VOID, Type, TypeSource

_TAGGED = re.compile(r"^(struct|union|enum)\s+(\w+)$")
_SUFFIX = re.compile(r"^(.*?)\s*(\*|\[\s*(\d*)\s*\])$")


class TypeRegistry:
    def __init__(self, ptr_size: int = 8) -> None:
        self.sources: list[TypeSource] = []
        self.ptr_size = ptr_size
        self._cache: dict[str, Type] = {}

    def add_source(self, source: TypeSource) -> None:
        self.sources.append(source)
        self._cache.clear()

    def remove_source(self, source: TypeSource) -> None:
        """Stop asking ``source`` (a module's debug file dropped by ``mod -d``)."""
        if source in self.sources:
            self.sources.remove(source)
        self._cache.clear()

    def close(self) -> None:
        """Let each source that keeps something for later (a DWARF scan cut short) keep it."""
        for source in self.sources:
            closer = getattr(source, "close", None)
            if closer is not None:
                closer()

    def lookup(self, spelling: str) -> Type:
        """The type for a C spelling (``struct node``, ``node``, ``char *``, ``int[4]``);
        SymbolError if no source knows it."""
        text = " ".join(spelling.split())
        hit = self._cache.get(text)
        if hit is None:
            hit = self._parse(text)
            self._cache[text] = hit
        return hit

    def find(self, spelling: str) -> Type | None:
        try:
            return self.lookup(spelling)
        except SymbolError:
            return None

    def variable_type(self, name: str) -> Type | None:
        for src in self.sources:
            t = src.variable_type(name)
            if t is not None:
                return t
        return None

    def names(self) -> Iterable[str]:
        seen: set[str] = set()
        for src in self.sources:
            for n in src.type_names():
                if n not in seen:
                    seen.add(n)
                    yield n

    def pointer_to(self, t: Type) -> Type:
        return Type("pointer", "", self.ptr_size, _target=t)

    def _parse(self, text: str) -> Type:
        m = _SUFFIX.match(text)
        if m:
            base = self.lookup(m.group(1))
            if m.group(2) == "*":
                return self.pointer_to(base)
            count = int(m.group(3)) if m.group(3) else None
            return Type("array", "", 0, count=count, _target=base)
        text = re.sub(r"^(const|volatile)\s+", "", text)
        if text == "void":
            return VOID
        tagged = _TAGGED.match(text)
        kind, name = (tagged.group(1), tagged.group(2)) if tagged else (None, text)
        for src in self.sources:
            t = src.find_type(name, kind)
            if t is not None:
                return t
        if kind is None:
            # mdb lets "node" stand for "struct node"
            for tag in ("struct", "union", "enum"):
                for src in self.sources:
                    t = src.find_type(name, tag)
                    if t is not None:
                        return t
        if not self.sources:
            raise SymbolError(f"no type information loaded (cannot look up {text!r})")
        raise SymbolError(f"unknown type {text!r}")
