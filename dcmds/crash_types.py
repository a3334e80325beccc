"""crash's ``struct``, ``union`` and ``whatis`` (gdb's ``ptype``), in crash's layout.

Values print as gdb prints them (pmdb.types.gdbprint), definitions as gdb's ptype
(pmdb.types.cdecl); mdb's ::print keeps its own layout.
"""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError, SymbolError
from pmdb.types.cdecl import definition
from pmdb.types.gdbprint import gdb_struct, gdb_value
from pmdb.types.model import Type, type_name
from pmdb.types.value import Object, follow_path, path_offset

from .crash_memory import crash_address
from .lists import symbol_namer

STRUCT_OPTS = {"o": "offsets", "x": "hex", "d": "decimal"}
STRUCT_USAGE = "[-o] name[.member[,member...]] [address|symbol] [count]"


@dcmd("struct", synopsis="crash's struct: a structure's definition, or its contents at an address",
      example="struct task_struct.pid,comm init_task", usage=STRUCT_USAGE)
def struct_cmd(ctx: Context, *args: Any) -> None:
    """``struct NAME [ADDR [COUNT]]``: with an address, the structure there as crash (gdb)
    prints it, COUNT of them one after another; ``NAME.m1,m2`` only those members. Without
    an address, the definition and its SIZE; -o puts each member's offset (with an
    address: its address) before it."""
    _aggregate(ctx, "struct", args)


@dcmd("union", synopsis="crash's union: a union's definition, or its contents at an address",
      example="union thread_union init_thread_union", usage=STRUCT_USAGE)
def union_cmd(ctx: Context, *args: Any) -> None:
    """As ``struct``, for a union."""
    _aggregate(ctx, "union", args)


def _aggregate(ctx: Context, kind: str, args: tuple[Any, ...]) -> None:
    positional, opts = parse_options(kind, STRUCT_OPTS, args, STRUCT_USAGE)
    if not positional:
        raise CommandError(f"{kind}: a {kind} name is needed (usage: {kind} {STRUCT_USAGE})")
    if len(positional) > 3:
        raise CommandError(f"{kind}: too many arguments (usage: {kind} {STRUCT_USAGE})")
    name, _, member_list = str(positional[0]).partition(".")
    t = ctx.target.types.lookup(f"{kind} {name}")
    members = [m for m in member_list.split(",") if m]
    addr = crash_address(ctx, str(positional[1])) if len(positional) > 1 else ctx.addr
    count = ctx.value(str(positional[2]), radix=10, what="count") if len(positional) > 2 else 1
    if addr is None:
        _show_definition(ctx, t, members, bool(opts.get("offsets")))
        return
    if not 0 < count <= ctx.config.get("limits.max_items"):
        raise CommandError(f"{kind}: bad count {count}")
    describe = symbol_namer(ctx)
    size = t.sizeof()
    for i in range(count):
        obj = Object(ctx.target.memory, t, addr + i * size)
        ctx.target.memory.read(obj.address, 1)      # an unreadable start is one error line
        if opts.get("offsets"):
            lines = [*definition(t, offsets=True, base=obj.address), f"SIZE: {size}"]
        elif members:
            lines = [f"  {m} = {gdb_value(follow_path(obj, m), describe, 1)}," for m in members]
        else:
            lines = gdb_struct(obj, describe).splitlines()
        if i and not members:
            lines = ["", *lines]         # crash parts whole structures with a blank line
        ctx.out.record({"address": obj.address, "type": type_name(t)}, text=lines)


def _show_definition(ctx: Context, t: Type, members: list[str], offsets: bool) -> None:
    if not members:
        ctx.out.record({"type": type_name(t), "size": t.sizeof()},
                       text=[*definition(t, offsets=offsets), f"SIZE: {t.sizeof()}"])
        return
    lines = [f"{type_name(t)} {{"]
    for m in members:
        bit_off, mtype, bits = path_offset(t, m)
        decl = type_name(mtype, m.split(".")[-1]) + (f" : {bits}" if bits else "")
        lines.append(f"  [{bit_off // 8}] {decl};")
    lines.append("}")
    ctx.out.record({"type": type_name(t)}, text=lines)


@dcmd("ptype", addr="none",
      synopsis="crash's whatis (gdb's ptype): a type's definition, or a symbol's declared type",
      example="whatis struct list_head", usage="[-o] struct|union|enum NAME | typedef | symbol")
def ptype(ctx: Context, *args: Any) -> None:
    """The definition of a type (``struct NAME``, a bare struct or union tag, a typedef)
    with its SIZE, or a global's declaration (``volatile unsigned long jiffies;``) when its
    type is known. -o shows member offsets."""
    positional, opts = parse_options("whatis", {"o": "offsets"}, args, "[-o] name")
    if not positional:
        raise CommandError("whatis: a type or symbol name is needed")
    words = [str(w) for w in positional]
    spelling = " ".join(words)
    types = ctx.target.types
    found = types.find(spelling)
    if found is None and len(words) == 1:
        for tag in ("struct", "union", "enum"):
            found = types.find(f"{tag} {spelling}")
            if found is not None:
                break
    if found is not None:
        lines = definition(found, offsets=bool(opts.get("offsets")))
        if found.kind == "typedef" and found.strip().kind not in ("struct", "union"):
            lines = [f"typedef {type_name(found.strip(), found.name)};"]     # resolved, as ptype does
        ctx.out.record({"type": type_name(found), "size": found.sizeof()},
                       text=[*lines, f"SIZE: {found.sizeof()}"])
        return
    if len(words) == 1 and ctx.target.symbols.lookup(spelling) is not None:
        vtype = types.variable_type(spelling)
        if vtype is None:
            raise SymbolError(f"whatis: no type is known for {spelling} (BTF describes only "
                              f"per-CPU variables; a DWARF vmlinux would describe it)")
        ctx.out.record({"symbol": spelling, "type": type_name(vtype)}, text=[f"{type_name(vtype, spelling)};"])
        return
    raise SymbolError(f"whatis: no type or symbol named {spelling!r}")
