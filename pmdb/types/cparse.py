"""Parse a C type declaration (what mdb's ``::typedef`` takes) into the Type model.

``struct list { struct list *next; int a : 3; union { int b; char c; }; char tail[]; }``
becomes a struct Type laid out as the C ABI lays it out: each member at the next offset
aligned to its type, bitfields packed into units of their declared type, anonymous
structs and unions kept as unnamed members, the size rounded up to the largest alignment.
Names of existing types are resolved through a callback, so the parser itself knows only
C's keywords; a struct's tag is announced before its body is read, so a member may point
at the struct being defined. A bad declaration is one DeclError naming what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pmdb.errors import CommandError
from pmdb.types.model import Member, Type


class DeclError(CommandError):
    """A C declaration that does not parse or cannot be laid out."""


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(0[xX][0-9a-fA-F]+|\d+)|(-?\d+)|(.))")
BASE_WORDS = frozenset({"signed", "unsigned", "char", "short", "int", "long", "_Bool", "float",
                        "double", "void"})
QUALIFIERS = frozenset({"const", "volatile", "restrict"})
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Model:
    """A data model: the sizes that differ between lp32 and lp64."""

    name: str
    ptr_size: int
    long_size: int


# (kind, resolver of a name; kind is "struct"/"union"/"enum" for tags, None for typedef names)
Resolver = Callable[[str, str | None], Type | None]
TagDefiner = Callable[[str, str, Type], None]


def tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        tok = m.group(1) or m.group(2) or m.group(3) or m.group(4)
        if tok:
            out.append(tok)
        pos = m.end()
    return out


class DeclParser:
    """One declaration: ``parse_type()`` reads a type specifier and abstract declarator."""

    def __init__(self, text: str, model: Model, resolve: Resolver,
                 base: Callable[[str], Type], define_tag: TagDefiner) -> None:
        self.toks = tokens(text)
        self.i = 0
        self.model = model
        self.resolve = resolve
        self.base = base
        self.define_tag = define_tag

    # -- tokens ---------------------------------------------------------------------------

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise DeclError("unexpected end of the declaration")
        self.i += 1
        return tok

    def expect(self, want: str) -> None:
        got = self.peek()
        if got != want:
            raise DeclError(f"expected '{want}' in the declaration, found "
                            f"{repr(got) if got is not None else 'its end'}")
        self.i += 1

    # -- the whole declaration -----------------------------------------------------------------

    def parse_type(self) -> Type:
        """A type specifier with an optional abstract declarator (``char *[4]``); nothing may
        follow it."""
        t = self.specifier()
        t, name = self.declarator(t)
        if name is not None:
            raise DeclError(f"unexpected name '{name}' in a type (the new name is ::typedef's "
                            "second argument)")
        if self.peek() is not None:
            raise DeclError(f"unexpected '{self.peek()}' after the type")
        return t

    # -- specifiers --------------------------------------------------------------------------

    def specifier(self) -> Type:
        while self.peek() in QUALIFIERS:
            self.take()
        tok = self.peek()
        if tok is None:
            raise DeclError("missing a type")
        if tok in ("struct", "union"):
            return self.aggregate(self.take())
        if tok == "enum":
            return self.enum()
        if tok in BASE_WORDS:
            return self.base_words()
        if tok == "{":
            raise DeclError("a member list needs 'struct' or 'union' before its '{'")
        if not IDENTIFIER.match(tok):
            raise DeclError(f"expected a type, found '{tok}'")
        self.take()
        found = self.resolve(tok, None)
        if found is None:
            raise DeclError(f"unknown type '{tok}'")
        return found

    def base_words(self) -> Type:
        words = []
        while self.peek() in BASE_WORDS or self.peek() in QUALIFIERS:
            tok = self.take()
            if tok not in QUALIFIERS:
                words.append(tok)
        return self.base(" ".join(words))

    def aggregate(self, kind: str) -> Type:
        tag = self.take() if self.peek() is not None and IDENTIFIER.match(self.peek() or "") else ""
        if self.peek() != "{":
            if not tag:
                raise DeclError(f"'{kind}' needs a tag or a member list")
            found = self.resolve(tag, kind)
            if found is None:               # a forward reference: an incomplete type
                found = Type(kind, tag, 0, _members=[])
                self.define_tag(kind, tag, found)
            return found
        t = Type(kind, tag, 0, _members=[])
        if tag:
            self.define_tag(kind, tag, t)   # before the body: members may point back at it
        self.take()
        members = []
        while self.peek() != "}":
            if self.peek() is None:
                raise DeclError(f"missing '}}' to close the {kind}")
            members += self.member_line()
        self.take()
        if not members:
            raise DeclError(f"{kind} {tag + ' ' if tag else ''}has no members")
        layout(t, members, self.model)
        return t

    def member_line(self) -> list[tuple[str, Type, int | None]]:
        base = self.specifier()
        if self.peek() == ";":                  # an anonymous struct or union member
            self.take()
            if base.kind not in ("struct", "union") or base.name:
                raise DeclError("a member needs a name")
            return [("", base, None)]
        out = []
        while True:
            t, name = self.declarator(base)
            if name is None:
                raise DeclError("a member needs a name")
            bits = None
            if self.peek() == ":":
                self.take()
                bits = self.number()
                if not t.is_integer():
                    raise DeclError(f"bitfield '{name}' must have an integer type")
                if bits <= 0 or bits > 8 * t.sizeof():
                    raise DeclError(f"bitfield '{name}' cannot have {bits} bits")
            out.append((name, t, bits))
            tok = self.take() if self.peek() is not None else None
            if tok == ";":
                return out
            if tok != ",":
                raise DeclError(f"expected ';' after member '{name}'"
                                + (f", found '{tok}'" if tok else ""))

    def enum(self) -> Type:
        self.take()
        tag = self.take() if IDENTIFIER.match(self.peek() or "") else ""
        if self.peek() != "{":
            found = self.resolve(tag, "enum") if tag else None
            if found is None:
                raise DeclError(f"unknown enum '{tag}'" if tag else "'enum' needs a tag or a list")
            return found
        self.take()
        values, nxt = [], 0
        while self.peek() != "}":
            name = self.take()
            if not IDENTIFIER.match(name):
                raise DeclError(f"bad enumerator '{name}'")
            if self.peek() == "=":
                self.take()
                nxt = self.number(signed=True)
            values.append((name, nxt))
            nxt += 1
            if self.peek() == ",":
                self.take()
            elif self.peek() != "}":
                raise DeclError("expected ',' or '}' in the enum")
        self.take()
        t = Type("enum", tag, 4, signed=True, _enumerators=values)
        if tag:
            self.define_tag("enum", tag, t)
        return t

    # -- declarators -------------------------------------------------------------------------

    def declarator(self, t: Type) -> tuple[Type, str | None]:
        while self.peek() == "*":
            self.take()
            t = Type("pointer", "", self.model.ptr_size, _target=t)
            while self.peek() in QUALIFIERS:
                self.take()
        if self.peek() == "(":
            raise DeclError("function pointers are not supported by ::typedef")
        name = None
        if self.peek() is not None and IDENTIFIER.match(self.peek() or ""):
            name = self.take()
        dims: list[int | None] = []
        while self.peek() == "[":
            self.take()
            if self.peek() == "]":
                dims.append(None)
            else:
                n = self.number(signed=True)
                if n <= 0:
                    raise DeclError(f"array '{name or ''}' cannot have {n} elements")
                dims.append(n)
            self.expect("]")
        if self.peek() == "]":
            raise DeclError(f"']' without '[' after '{name or ''}'")
        for dim in reversed(dims):
            t = Type("array", "", 0, count=dim, _target=t)
        return t, name

    def number(self, signed: bool = False) -> int:
        tok = self.take()
        try:
            value = int(tok, 0)
        except ValueError:
            raise DeclError(f"expected a number, found '{tok}'") from None
        if value < 0 and not signed:
            raise DeclError(f"expected a positive number, found '{tok}'")
        return value


def alignment(t: Type, model: Model) -> int:
    """C's alignment of t: a scalar's size (at most the pointer size on lp32, as i386 lays out
    long long), an array's element's, an aggregate's largest member's."""
    s = t.strip()
    if s.kind == "array":
        return alignment(s.target, model) if s.target is not None else 1
    if s.kind in ("struct", "union"):
        return max((alignment(m.type, model) for m in s.members), default=1)
    return max(1, min(s.size or 1, model.ptr_size if model.ptr_size == 4 else 8))


def layout(t: Type, members: list[tuple[str, Type, int | None]], model: Model) -> None:
    """Offsets, bitfield placement and size of a struct or union, as the C ABI has them."""
    seen: set[str] = set()
    placed: list[Member] = []
    bit = 0                 # the next free bit (struct)
    size_bits = 0
    for i, (name, mt, bits) in enumerate(members):
        if name:
            if name in seen:
                raise DeclError(f"member '{name}' is declared twice")
            seen.add(name)
        strip = mt.strip()
        if strip.kind == "array" and strip.count is None and (t.kind == "union" or i != len(members) - 1):
            raise DeclError(f"only a struct's last member may be an array without a size ('{name}')")
        if strip.kind == "array" and strip.count is None:
            strip.count = 0
        align_bits = 8 * alignment(mt, model)
        if t.kind == "union":
            placed.append(Member(name, mt, 0, bits or 0))
            size_bits = max(size_bits, bits or 8 * mt.sizeof())
            continue
        if bits is not None:
            unit = 8 * mt.sizeof()
            if bit // unit != (bit + bits - 1) // unit:
                bit = -(-bit // unit) * unit      # does not fit its unit: start the next one
            placed.append(Member(name, mt, bit, bits))
            bit += bits
        else:
            bit = -(-bit // align_bits) * align_bits
            placed.append(Member(name, mt, bit))
            bit += 8 * mt.sizeof()
        size_bits = bit
    align = 8 * max((alignment(m.type, model) for m in placed), default=1)
    t.size = -(-size_bits // align) * align // 8
    t.members = placed
