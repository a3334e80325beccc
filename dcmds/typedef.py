"""mdb's type workbench: ``::typedef`` declares C types in the session, with or without a
target, and the type dcmds (``::sizeof``, ``::offsetof``, ``::print``) find them."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError
from pmdb.types.model import Type, type_name
from pmdb.types.registry import TypeRegistry
from pmdb.types.synthetic import MODELS, SyntheticTypes

_KEY = "typedef.synthetic"


def _holder(ctx: Context) -> dict[str, SyntheticTypes]:
    return ctx.store(_KEY, dict)


def synthetic(ctx: Context) -> SyntheticTypes:
    """The session's declared types (lp64 unless the target or ``-c`` says otherwise)."""
    holder = _holder(ctx)
    if "types" not in holder:
        holder["types"] = SyntheticTypes("lp32" if ctx.has_target and ctx.target.arch.ptr_size == 4
                                         else "lp64")
    return holder["types"]


def type_registry(ctx: Context) -> TypeRegistry:
    """Where the type dcmds look names up: the target's types, then the declared ones (only
    once something was declared, so a target's lookups are unchanged until then); without a
    target, the declared ones and C's base types."""
    synth = synthetic(ctx)
    if not ctx.has_target:
        reg = TypeRegistry(synth.model.ptr_size)
        reg.add_source(synth)
        return reg
    reg = ctx.target.types
    if synth.declared and synth not in reg.sources:
        reg.add_source(synth)
    return reg


@dcmd("typedef", addr="none", synopsis="declare a C type, or choose the data model of C's types",
      example="::typedef \"struct node { struct node *next; int v; }\" node_t",
      opts={"c:": "model", "l": "list_types", "r": "remove"},
      usage="[-c lp32|lp64] [-l] [-r] [declaration name]")
def typedef_cmd(ctx: Context, *args: Any, model: str | None = None, list_types: bool = False,
                remove: bool = False) -> None:
    """``::typedef "struct list { struct list *next; int v : 3; }" list_t`` declares list_t
    (and ``struct list``) as C lays it out: structs, unions, anonymous members, bitfields,
    arrays (a struct's last may be ``[]``), pointers, enums, and members pointing at the
    struct being declared. ``::typedef uint8_t byte_t`` names an existing type.

    ``-c lp32|lp64`` starts over with C's base types of that data model (int, long,
    uint8_t, uintptr_t ...), which is what is there with no target; ``-l`` lists the
    declared types, ``-r`` removes them. The type dcmds find declared types by name."""
    if model is not None:
        key = str(model).lower()
        if key not in MODELS:
            raise CommandError(f"typedef: unknown data model '{model}' (lp32 or lp64)")
        _holder(ctx)["types"] = SyntheticTypes(key)
    synth = synthetic(ctx)
    if remove:
        synth.clear()
    if list_types:
        for name in synth.type_names():
            ctx.out.line(name)
    if not args:
        if model is None and not list_types and not remove:
            raise CommandError("typedef: give a declaration and a name (usage: ::typedef "
                               "[-c lp32|lp64] [-l] [-r] [declaration name])")
        return
    if len(args) != 2:
        raise CommandError(f"typedef: expected a declaration and a name, got {len(args)} "
                           "argument(s) (quote a declaration that has blanks)")
    decl, name = (str(a) for a in args)
    resolve = None
    if ctx.has_target:
        types = ctx.target.types

        def resolve(n: str, kind: str | None) -> Any:
            return types.find(f"{kind} {n}" if kind else n)
    synth.declare(decl, name, resolve)
    type_registry(ctx)


def layout_lines(t: Type, label: str, *, offsets: bool, types: bool) -> list[str]:
    """A type's members with no memory to read, as mdb's ``::print -at type`` shows them
    without a target: ``0 gift_t {``, then ``    0 uintptr_t [7] stone `` for each member
    (offset in hex, type, name, a blank), nested aggregates opened in place."""
    return [*_layout(t, label, 0, 0, offsets, types, top=True)]


def _layout(t: Type, name: str, off: int, depth: int, offsets: bool, types: bool,
            top: bool = False, bits: int = 0) -> list[str]:
    pad = "    " * depth
    s = t.strip()
    spelled = s.kind if s.kind in ("struct", "union") and not s.name and t is s else type_name(t)
    if top or not types:
        spelled = ""
    sep = "" if not spelled or spelled.endswith("*") or not name else " "
    head = f"{off:x} " * offsets + spelled + sep + name
    if s.kind not in ("struct", "union"):
        return [f"{pad}{head}{f' :{bits}' if bits else ''} "]
    lines = [f"{pad}{head} {{"]
    for m in s.members:
        lines += _layout(m.type, m.name, off + m.bit_offset // 8, depth + 1, offsets, types,
                         bits=m.bit_size)
    return [*lines, f"{pad}}}"]
