"""Typed memory: ::print, ::sizeof and ::offsetof, after mdb's dcmds of those names."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, FaultError, SymbolError
from pmdb.format_lines import radix_text
from pmdb.output import Column
from pmdb.types.model import Type, type_name
from pmdb.types.printer import PrintOptions, format_object
from pmdb.types.value import Object, follow_path, path_offset, take_type

from .print_tree import member_tree
from .typedef import layout_lines, type_registry

ADDRESS_COLUMNS = (Column("address", "ADDRESS"),)


def lookup_type(ctx: Context, spelling: str) -> Type:
    """A type by its C spelling: the target's, a ``::typedef``'d one, or (no target) C's."""
    return type_registry(ctx).lookup(spelling)


def symbol_type(ctx: Context, addr: int) -> Type | None:
    """The declared type of the global variable that starts at addr, when DWARF knows it."""
    hit = ctx.target.symbols.resolve(addr)
    if hit is None or hit[1] != 0:
        return None
    return ctx.target.types.variable_type(hit[0].name)


def _print_target(ctx: Context, args: list[str]) -> tuple[Object, list[tuple[str, str]]]:
    """The object ::print shows and its member paths: a named type, else the type the pipe
    carries, else the declared type of the global at addr (or named as the first argument)."""
    target = ctx.target
    addr = ctx.addr
    implicit = ctx.type if ctx.type is not None else (symbol_type(ctx, addr) if addr is not None else None)
    if addr is None:
        if not args:
            raise CommandError("print needs an address or a global variable name (addr::print type)")
        if str(args[0]) in ("struct", "union", "enum"):
            lookup_type(ctx, take_type(list(args))[0])     # an unknown type says so first
            raise CommandError("print needs an address to print a type at (addr::print type)")
        name = str(args[0]).split(".")[0].split("[")[0].split("-")[0]
        sym = target.symbols.lookup(name)
        vtype = target.types.variable_type(name) if sym is not None else None
        if sym is None or vtype is None:
            if target.types.find(take_type(list(args))[0]) is not None:
                raise CommandError("print needs an address to print a type at (addr::print type)")
            what = "no type is known for global" if sym is not None else "unknown global variable or type"
            raise SymbolError(f"print: {what} '{name}'")
        rest = str(args[0])[len(name):].lstrip(".")
        paths = ([(str(args[0]), rest)] if rest else []) + [(str(a), str(a)) for a in args[1:]]
        return Object(target.memory, vtype, sym.addr), paths
    if args and not (implicit is not None and _is_member_of(implicit, str(args[0]))):
        if implicit is None or str(args[0]) in ("struct", "union", "enum") \
                or target.types.find(take_type(list(args))[0]) is not None:
            spelling, tail = take_type(list(args))
            return Object(target.memory, lookup_type(ctx, spelling), addr), [(str(a), str(a)) for a in tail]
        if str(args[0])[:1] not in ".[-":
            raise SymbolError(f"'{args[0]}' is neither a type nor a member of {type_name(implicit)}")
    if implicit is None:
        raise CommandError(f"print: no type given and none known for {addr:#x} (addr::print type)")
    return Object(target.memory, implicit, addr), [(str(a), str(a)) for a in args]


def _is_member_of(t: Type, path: str) -> bool:
    first = path.split(".")[0].split("[")[0].split("-")[0]
    return t.strip().kind in ("struct", "union") and t.find_member(first) is not None


@dcmd("print", synopsis="print a typed object (struct members, arrays, pointers)",
      example="g_table::print struct node * | ::print struct node",
      opts={"a": "addrs", "t": "types", "d": "decimal"}, usage="[-adt] [type] [member ...]")
def print_cmd(ctx: Context, *args: Any, addrs: bool = False, types: bool = False, decimal: bool = False) -> None:
    """Show the object at addr as the given type, or only the named members (paths such as
    ``a.b[2]`` or ``next->val``; array indexes are hex unless written 0t). The type may be
    left out when the pipe carries one or addr is a global whose type DWARF declares;
    ``::print g_table`` prints a global by name. -t shows each member's type, -a its address,
    -d integers in decimal (``0t102``). A flexible array member (``numbers[]``) indexes
    past its declared length of 0: reads stop where memory does.
    In a pipe, a pointer hands on what it points at (with its type), an integer its value,
    anything else its address. With no target and no address, a type's layout: each
    member's offset (-a) and type (-t), as mdb's type workbench prints it."""
    if not ctx.has_target and ctx.addr is None and args:
        spelling, rest = take_type(list(args))
        if rest:
            raise CommandError("print: without a target only a whole type's layout can be shown")
        for text in layout_lines(lookup_type(ctx, spelling), spelling, offsets=addrs, types=types):
            ctx.out.line(text)
        return
    obj, paths = _print_target(ctx, list(args))
    picked: list[tuple[str | None, Object]] = [(shown, follow_path(obj, p)) for shown, p in paths]
    picked = picked or [(None, obj)]
    if ctx.piped:
        for _, o in picked:
            _hand_on(ctx, o, addrs)
        return
    for _, o in picked:
        _first_byte_readable(o)
    opts = PrintOptions(show_types=types, show_addrs=addrs, decimal=decimal, describe=lambda v: pointer_text(ctx, v))
    for name, o in picked:
        ctx.out.record(member_tree(o, opts, name), text=[format_object(o, opts, name=name)])


def _first_byte_readable(obj: Object) -> None:
    """One error for an object whose start cannot be read (``0xdeadbeef::print task_struct``),
    not an ``<unreadable>`` line for each of its members; a struct that only runs into an
    unreadable page still prints, with those members marked."""
    try:
        obj.memory.read(obj.address, 1)
    except FaultError as err:
        raise FaultError(obj.address, max(obj.size, 1), err.reason) from None


def pointer_text(ctx: Context, value: int) -> str:
    """A pointer as ``sym+off`` only when a sized symbol contains it (Target.pointer_text)."""
    return ctx.target.pointer_text(value)


def _hand_on(ctx: Context, obj: Object, addrs: bool) -> None:
    """What mdb's ::print sends down a pipe, with the type pmdb can add."""
    kind = obj.kind
    if addrs or kind not in ("pointer", "int", "enum", "bool"):
        ctx.emit(obj.address, obj.type)
    elif kind == "pointer":
        target = obj.type.strip().target
        ctx.emit(int(obj), target if target is not None and target.strip().kind != "void" else None)
    else:
        ctx.emit(int(obj) & (1 << 64) - 1)


@dcmd("sizeof", addr="none", synopsis="print the size of a type", example="::sizeof struct node",
      usage="type")
def sizeof_cmd(ctx: Context, *args: Any) -> None:
    """The size in bytes of a type, as mdb prints it (``sizeof (int) = 4``, ``= 0x10``: the
    default radix, its prefix shown from 10 on); piped, the size goes on as a number."""
    spelling, rest = take_type(list(args))
    if rest:
        raise CommandError("sizeof: one type only (usage: ::sizeof type)")
    size = lookup_type(ctx, spelling).sizeof()
    if ctx.piped:
        ctx.emit(size)
    else:
        text = f"sizeof ({spelling}) = {radix_text(size, ctx.radix, show_base=True)}"
        ctx.out.record({"type": spelling, "size": size}, text=[text])


@dcmd("offsetof", addr="none", synopsis="print the offset of a member in a type",
      example="::offsetof struct node next", usage="type member")
def offsetof_cmd(ctx: Context, *args: Any) -> None:
    """The byte offset of a member (a path such as ``a.b[2]`` too) and its size; a bitfield
    shows ``.bit`` after the byte offset. Piped, the offset goes on as a number."""
    spelling, rest = take_type(list(args))
    if len(rest) != 1:
        raise CommandError("offsetof: usage: ::offsetof type member")
    member = str(rest[0])
    bit_off, mtype, bit_size = path_offset(lookup_type(ctx, spelling), member)
    if ctx.piped:
        if bit_off % 8:
            raise CommandError(f"member {member} of {spelling} is not byte-aligned")
        ctx.emit(bit_off // 8)
        return
    text = f"offsetof ({spelling}, {member}) = {bit_off // 8:#x}"
    if bit_off % 8:
        text += f".{bit_off % 8:x}"
    size = mtype.sizeof()
    if bit_size:
        text += f", bitfield :{bit_size}"
    elif size:
        text += f", sizeof (...->{member}) = {size:#x}"
    ctx.out.record({"type": spelling, "member": member, "offset": bit_off // 8, "bit": bit_off % 8,
                    "bits": bit_size or None, "size": size}, text=[text])
