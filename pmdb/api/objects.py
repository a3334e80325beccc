"""Object: a typed value in the program, for scripts (drgn's spelling, pmdb's type model).

A thin face over pmdb.types.value.Object, the one ``::print`` formats: members as
attributes, ``[i]`` for arrays and pointers, ``int()``, and a repr that is ``::print``'s
text. API names end in ``_`` (``type_``, ``string_()``, ``value_()``) so they never hide a
member; ``obj.member_("name")`` or ``obj["name"]`` reaches a member whatever it is called.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pmdb.errors import CommandError, FaultError, PmdbError, SymbolError
from pmdb.types.model import Type, type_name
from pmdb.types.printer import PrintOptions, format_object
from pmdb.types.value import Object as _Value

if TYPE_CHECKING:
    from pmdb.api.program import Program


class Object:
    """A value of a C type at an address of a Program; nothing is read until asked for.

    ``task.comm``, ``task.mm.pgd`` (through pointers as ``->``), ``arr[3]``, ``ptr[0]``,
    ``ptr.deref()``, ``int(task.pid)``, ``task.comm.string_()``, ``obj.address``,
    ``obj.type_``. ``repr(obj)`` is what ``::print`` shows; ``obj.value_()`` the same as
    Python values (ints, bytes for char arrays, lists, dicts)."""

    __slots__ = ("_prog", "_value")

    def __init__(self, prog: Program, value: _Value) -> None:
        self._prog = prog
        self._value = value

    # -- identity -------------------------------------------------------------------------

    @property
    def address(self) -> int:
        """Where the value lives in the program's (virtual) memory."""
        return self._value.address

    address_ = address

    @property
    def type_(self) -> Type:
        """The value's C type (``str(obj.type_)`` spells it)."""
        return self._value.type

    @property
    def prog_(self) -> Program:
        return self._prog

    def sizeof_(self) -> int:
        return self._value.size

    # -- navigation -----------------------------------------------------------------------

    def member_(self, name: str) -> Object:
        """A struct/union member (through a pointer, as ``->``); AttributeError if there is none."""
        try:
            return Object(self._prog, self._value.member(name))
        except SymbolError as err:
            raise AttributeError(str(err)) from None

    def __getattr__(self, name: str) -> Object:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.member_(name)
        except CommandError as err:     # not a struct: an AttributeError, as Python expects
            raise AttributeError(str(err)) from None

    def __dir__(self) -> list[str]:
        names = list(super().__dir__())
        t = self._value.type.strip()
        if t.kind == "pointer" and t.target is not None:
            t = t.target.strip()
        if t.kind in ("struct", "union"):
            names += [m.name for m in t.members if m.name]
        return names

    def __getitem__(self, key: int | str) -> Object:
        if isinstance(key, str):
            return self.member_(key)
        return Object(self._prog, self._value[key])

    def __len__(self) -> int:
        t = self._value.type.strip()
        if t.kind != "array" or t.count is None:
            raise TypeError(f"{type_name(self._value.type)} has no length")
        return t.count

    def __iter__(self) -> Iterator[Object]:
        """An array's elements (``len(obj)`` of them)."""
        for i in range(len(self)):
            yield self[i]

    def deref(self) -> Object:
        """What a pointer points at (FaultError for NULL)."""
        return Object(self._prog, self._value.deref())

    def cast(self, type: str | Type) -> Object:
        """The same address seen as another type (a C spelling or a Type)."""
        t = self._prog.type(type) if isinstance(type, str) else type
        return Object(self._prog, self._value.cast(t))

    # -- values ---------------------------------------------------------------------------

    def __int__(self) -> int:
        return int(self._value)

    def __index__(self) -> int:
        return int(self._value)

    def __float__(self) -> float:
        if self._value.kind == "float":
            return self._value.float_value()
        return float(int(self._value))

    def __bool__(self) -> bool:
        """A scalar's truth (a NULL pointer is false); an aggregate is always true."""
        if self._value.kind in ("struct", "union", "array"):
            return True
        return int(self._value) != 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Object):
            return (self.address, type_name(self.type_)) == (other.address, type_name(other.type_))
        if isinstance(other, int | float) and self._value.kind in ("int", "bool", "enum", "pointer", "float"):
            return float(self) == other if self._value.kind == "float" else int(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # values compare by content; not a dict key

    def string_(self, limit: int = 4096) -> bytes:
        """A char array up to its NUL, or the C string a ``char *`` points at."""
        return self._value.string(limit)

    def read_(self) -> bytes:
        """The value's raw bytes."""
        return self._value.read()

    def value_(self) -> Any:
        """The value as Python data: int/float/bool, bytes for a char array, list, or a dict
        of members (anonymous members' own members merged in)."""
        return _python(self._value)

    # -- display --------------------------------------------------------------------------

    def format_(self, *, types: bool = False, addresses: bool = False, decimal: bool = False) -> str:
        """``::print``'s text (``-t``, ``-a``, ``-d``); one line when the object's first byte
        cannot be read."""
        problem = _unreadable(self._value)
        if problem is not None:
            return problem
        opts = PrintOptions(show_types=types, show_addrs=addresses, decimal=decimal,
                            describe=self._prog.pointer_text)
        return format_object(self._value, opts)

    def __repr__(self) -> str:
        return self.format_()

    def __str__(self) -> str:
        return self.format_()

    def __rich__(self) -> Any:
        from pmdb.api.display import rich_print_text

        return rich_print_text(self.format_(), f"{type_name(self.type_)} @ {self.address:#x}")

    def _repr_html_(self) -> str:
        head = html.escape(f"{type_name(self.type_)} @ {self.address:#x}")
        body = _MEMBER_NAME.sub(r"\1<b>\2</b> =", html.escape(self.format_()))
        return f"<div><i>{head}</i><pre>{body}</pre></div>"


_MEMBER_NAME = re.compile(r"(^\s*)(\w+) =", re.M)


def _unreadable(value: _Value) -> str | None:
    """``<unreadable ADDR: why>`` when not even the first byte of the value can be read:
    one line instead of one per member."""
    try:
        value.memory.read(value.address, 1)
    except FaultError as err:
        return f"<unreadable {value.address:#x}: {err}>"
    return None


def _python(value: _Value) -> Any:
    t = value.type.strip()
    if t.kind in ("struct", "union"):
        out: dict[str, Any] = {}
        for member, sub in value.members():
            v = _python(sub)
            if member.name:
                out[member.name] = v
            elif isinstance(v, dict):
                out.update(v)
        return out
    if t.kind == "array":
        target = t.target.strip() if t.target is not None else None
        if target is not None and target.kind == "int" and target.size == 1:
            return value.read()
        return [_python(value[i]) for i in range(t.count or 0)]
    if t.kind == "float":
        return value.float_value()
    if t.kind == "bool":
        return bool(int(value))
    try:
        return int(value)
    except PmdbError:
        return None
