"""``::list``: mdb's ``addr::list type member`` and crash's ``list [-o off] [-s struct] [-H|-h] start``.

One dcmd speaks both, told apart by where the start is: mdb's comes before ``::``,
crash's is an argument. Both follow a next pointer or a list_head as container_of would
(pmdb.types.lists), bounded and loop-safe.
"""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.output import Column, Hex
from pmdb.types.gdbprint import gdb_struct, gdb_value
from pmdb.types.lists import ListLink, link_of, list_link, walk_list
from pmdb.types.model import Type
from pmdb.types.value import Object, follow_path

ADDRESS_COLUMNS = (Column("address", "ADDRESS"),)
# how far into a vmlinux data symbol a pointer may be named after it: kallsyms gives no data
# sizes (the gap to the next symbol, huge before a run of unnamed strings), gdb the ELF's own
DATA_REACH = 4096
CRASH_OPTS = {"o:": "offset", "s:": "show", "S:": "show", "H:": "standalone_head", "h:": "embedded_head",
              "e:": "end", "r": "reverse", "x": "hex", "d": "decimal", "B": "brent"}
CRASH_USAGE = "[-o offset|struct.member] [-s struct[.member,...]] [-e end] [-r] [-H|-h] start"


@dcmd("list", synopsis="walk a linked list (mdb's addr::list type member; crash's list)",
      example="init_task::list task_struct tasks | ::print task_struct pid comm",
      usage="type member (after an address), or crash's " + CRASH_USAGE)
def list_cmd(ctx: Context, *args: Any) -> None:
    """mdb: each node of the list starting at addr, following the member until NULL or back
    at the start; a member that is (or is inside) a list_head is followed as container_of
    would (``task_struct tasks`` gives task addresses). Piped, the nodes go on with their type.

    crash: ``list [-o OFFSET|struct.member] [-s struct[.m1,m2]] [-e END] [-r] [-H|-h] START``:
    without -H/-h the next pointer holds the next structure's address; with -h START is a
    structure holding an embedded list_head, with -H START is a standalone list head (not
    shown). -s prints each entry as crash does. A loop not through the start is corruption."""
    if ctx.addressed:
        link = list_link(ctx.target.types, list(args), ctx.type)
        for node in walk_list(ctx.target.memory, ctx.require_addr(), link):
            if ctx.piped:
                ctx.emit(node, link.node_type)
            else:
                ctx.out.table(ADDRESS_COLUMNS, [[Hex(node)]], header=False)
        return
    _crash_list(ctx, list(args))


def _crash_list(ctx: Context, args: list[Any]) -> None:
    positional, opts = parse_options("list", CRASH_OPTS, args, CRASH_USAGE)
    if "standalone_head" in opts and "embedded_head" in opts:
        raise CommandError("list: -H and -h cannot be used together")
    head_mode = "standalone_head" in opts or "embedded_head" in opts
    offset_spec = opts.get("offset")
    words = [str(w) for w in positional]
    if head_mode:       # -H START / -h START: the start is the option's value
        words.append(str(opts.get("standalone_head", opts.get("embedded_head"))))
    if offset_spec is None:
        member_words = [w for w in words if _is_member_spec(ctx, w)]
        if member_words:
            offset_spec = member_words[0]
            words.remove(offset_spec)
        elif len(words) >= 2:
            offset_spec = words.pop(0)
    if len(words) != 1:
        raise CommandError(f"list: one start address is needed (usage: list {CRASH_USAGE})")
    start = ctx.value(words[0], what="start address")
    link = _crash_link(ctx, offset_spec, bool(head_mode))
    if opts.get("reverse"):
        if not head_mode:
            raise CommandError("list: -r follows list_head prev pointers: it needs -H or -h")
        link = ListLink(link.next_offset + ctx.target.memory.ptr_size, link.entry_offset, link.node_type)
    end = ctx.value(str(opts["end"]), what="end address") if "end" in opts else None
    show = _show_spec(ctx, str(opts["show"])) if "show" in opts else None
    if "standalone_head" in opts:
        nodes = walk_list(ctx.target.memory, start, link, head=start, end=end)
    else:
        nodes = walk_list(ctx.target.memory, start, link, end=end)
    for node in nodes:
        if ctx.piped:
            ctx.emit(node, show[0] if show else link.node_type)
            continue
        lines = [f"{node:x}"]
        if show is not None:
            lines += _show(ctx, node, *show)
        ctx.out.record({"address": Hex(node)}, text=lines)


def _is_member_spec(ctx: Context, word: str) -> bool:
    """``struct.member`` (crash's offset argument), not a symbol or an expression."""
    name, dot, member = word.partition(".")
    return bool(dot and member and name.isidentifier()
                and any(ctx.target.types.find(s) is not None for s in (f"struct {name}", f"union {name}")))


def _crash_link(ctx: Context, spec: str | None, list_head: bool) -> ListLink:
    """crash's offset argument: ``struct.member`` or a number of bytes. With -H/-h the next
    pointer is a list_head's, pointing at the next entry's list_head; without them it
    points at the next structure itself."""
    if spec is None:
        return ListLink(0)
    if "." in spec and not spec[:1].isdigit():
        type_name, _, member = spec.partition(".")
        node_type = _struct_type(ctx, type_name)
        link = link_of(node_type, member)
        if not list_head:
            return ListLink(link.next_offset, 0, node_type)
        return ListLink(link.next_offset, link.entry_offset or link.next_offset, node_type)
    offset = ctx.value(spec, radix=10, what="offset")
    return ListLink(offset, offset if list_head else 0)


def _struct_type(ctx: Context, name: str) -> Type:
    """crash names structs bare (``task_struct``); typedefs and unions too."""
    types = ctx.target.types
    for spelling in (f"struct {name}", f"union {name}", name):
        found = types.find(spelling)
        if found is not None:
            return found
    return types.lookup(f"struct {name}")       # its error names the type


def _show_spec(ctx: Context, spec: str) -> tuple[Type, list[str]]:
    type_name, _, members = spec.partition(".")
    return _struct_type(ctx, type_name), [m for m in members.split(",") if m]


def _show(ctx: Context, addr: int, node_type: Type, members: list[str]) -> list[str]:
    """One entry as crash's -s prints it: the whole struct, or ``  member = value,`` lines."""
    obj = Object(ctx.target.memory, node_type, addr)
    describe = symbol_namer(ctx)
    if not members:
        return gdb_struct(obj, describe).splitlines()
    out = []
    for path in members:
        value = gdb_value(follow_path(obj, path), describe, 1)
        out.append(f"  {path} = {value},")
    return out


def symbol_namer(ctx: Context) -> Any:
    """An address -> ``name`` or ``name+off`` (gdb's ``<...>``), as crash's gdb names them:
    a function or a vmlinux object near its start, and inside a module the nearest module
    symbol below (crash's own table of module symbols has no sizes)."""
    symbols = ctx.target.symbols
    regions = {m.name: (m.base, m.base + m.size) for m in ctx.kernel.modules()} if ctx.is_kernel else {}

    def describe(addr: int) -> str | None:
        if addr < 1 << (8 * ctx.target.arch.ptr_size - 1):
            return None                  # per-CPU offsets and small numbers name nothing
        near = symbols.below(addr)
        if near is not None and near.module in regions:
            lo, hi = regions[near.module]
            alias = symbols.resolve(near.addr)     # the preferred name among aliases there
            if alias is not None and alias[1] == 0:
                near = alias[0]
            hit = (near, addr - near.addr) if lo <= addr < hi else None
        else:
            hit = symbols.resolve(addr)
        if hit is None:
            return None
        sym, off = hit
        if sym.module is None:
            reach = sym.size if sym.kind == "func" else min(sym.size or DATA_REACH, DATA_REACH)
            if off and off >= reach:
                return None              # kallsyms' data sizes are guesses: stay near the symbol
        return sym.name if off == 0 else f"{sym.name}+{off}"

    return describe
