"""Types made in the session rather than read from a target: C's base types for a data model
and what ``::typedef`` declares.

Without a target, mdb still knows ``int``, ``uint8_t`` or ``uintptr_t`` (of the host's data
model, or of the one ``::typedef -c lp32|lp64`` chose), so ``::sizeof uint8_t`` and
``::typedef "struct ..." name`` work with no dump open. With a target, this source sits
after the target's own (DWARF, BTF), so a declared type never hides the target's.
"""

from __future__ import annotations

from collections.abc import Iterable

from pmdb.types.cparse import IDENTIFIER, DeclError, DeclParser, Model, Resolver
from pmdb.types.model import VOID, Type

MODELS = {"lp32": Model("lp32", 4, 4), "lp64": Model("lp64", 8, 8)}

# C's spellings of the integer and floating types: (size, signed, kind); "L" is long's size
_BASE: dict[str, tuple[int | str, bool, str]] = {
    "char": (1, True, "int"), "signed char": (1, True, "int"), "unsigned char": (1, False, "int"),
    "short": (2, True, "int"), "unsigned short": (2, False, "int"),
    "int": (4, True, "int"), "unsigned int": (4, False, "int"),
    "long": ("L", True, "int"), "unsigned long": ("L", False, "int"),
    "long long": (8, True, "int"), "unsigned long long": (8, False, "int"),
    "_Bool": (1, False, "bool"), "float": (4, True, "float"), "double": (8, True, "float"),
    "long double": (16, True, "float"),
}
_SYNONYMS = {"signed": "int", "unsigned": "unsigned int", "short int": "short", "signed short": "short", "signed short int": "short",
             "unsigned short int": "unsigned short", "signed int": "int", "long int": "long",
             "signed long": "long", "signed long int": "long", "unsigned long int": "unsigned long",
             "long long int": "long long", "signed long long": "long long",
             "unsigned long long int": "unsigned long long"}

# the typedefs every illumos and Linux program has: name -> C spelling ("P" pointer-sized)
_TYPEDEFS = {
    "int8_t": "signed char", "int16_t": "short", "int32_t": "int", "int64_t": "long long",
    "uint8_t": "unsigned char", "uint16_t": "unsigned short", "uint32_t": "unsigned int",
    "uint64_t": "unsigned long long", "intptr_t": "long", "uintptr_t": "unsigned long",
    "uchar_t": "unsigned char", "ushort_t": "unsigned short", "uint_t": "unsigned int",
    "ulong_t": "unsigned long", "longlong_t": "long long", "u_longlong_t": "unsigned long long",
    "ptrdiff_t": "long", "size_t": "unsigned long", "ssize_t": "long", "off_t": "long",
    "u8": "unsigned char", "u16": "unsigned short", "u32": "unsigned int",
    "u64": "unsigned long long", "s8": "signed char", "s16": "short", "s32": "int",
    "s64": "long long", "bool": "_Bool",
}


class SyntheticTypes:
    """A TypeSource of base types for one data model plus the user's declarations."""

    def __init__(self, model: str = "lp64") -> None:
        self.model = MODELS[model]
        self.tags: dict[tuple[str, str], Type] = {}
        self.declared: dict[str, Type] = {}      # ::typedef's names, in order
        self._base: dict[str, Type] = {}

    # -- TypeSource ---------------------------------------------------------------------------

    def find_type(self, name: str, kind: str | None = None) -> Type | None:
        if kind is not None:
            return self.tags.get((kind, name))
        if name in self.declared:
            return self.declared[name]
        return self.base_type(name, missing_ok=True)

    def type_names(self) -> Iterable[str]:
        yield from self.declared
        yield from (f"{k} {n}" for k, n in self.tags)

    def variable_type(self, name: str) -> Type | None:
        return None

    # -- what ::typedef does ----------------------------------------------------------------

    def base_type(self, spelling: str, missing_ok: bool = False) -> Type:
        """A base C type (``unsigned long``) or a standard typedef (``uint8_t``); with
        missing_ok, None (typed Any for the callers that pass it) when it is neither."""
        words = " ".join(spelling.split())
        words = _SYNONYMS.get(words, words)
        if words == "void":
            return VOID
        hit = self._base.get(words)
        if hit is not None:
            return hit
        if words in _BASE:
            size, signed, kind = _BASE[words]
            hit = Type(kind, words, self.model.long_size if size == "L" else int(size), signed=signed)
        elif words in _TYPEDEFS:
            hit = Type("typedef", words, 0, _target=self.base_type(_TYPEDEFS[words]))
        elif missing_ok:
            return None  # type: ignore[return-value]
        else:
            raise DeclError(f"'{spelling}' is not a C base type")
        self._base[words] = hit
        return hit

    def declare(self, declaration: str, name: str, resolve_target: Resolver | None = None) -> Type:
        """``::typedef declaration name``: the new typedef, after the declaration parsed."""
        if not IDENTIFIER.match(name):
            raise DeclError(f"'{name}' is not a valid type name")

        def resolve(n: str, kind: str | None) -> Type | None:
            own = self.find_type(n, kind)
            if own is not None or resolve_target is None:
                return own
            return resolve_target(n, kind)

        pending: dict[tuple[str, str], Type] = {}
        parser = DeclParser(declaration, self.model, lambda n, k: pending.get((k or "", n)) or resolve(n, k),
                            self.base_type, lambda k, n, t: pending.__setitem__((k, n), t))
        target = parser.parse_type()
        self.tags.update(pending)           # only a declaration that parsed leaves its tags
        new = Type("typedef", name, 0, _target=target)
        self.declared[name] = new
        return new

    def clear(self) -> None:
        self.tags.clear()
        self.declared.clear()

