"""crash's ``tree``: the entries of a red-black tree, an XArray (radix tree) or a maple tree.

``tree [-t rbtree|xarray|radix|maple] [-r offset] [-o offset] [-s|-S struct[.m,...]] [-x|-d]
[-l] [-p] [-v] [-N] start``, in crash 8's output layout. The walks are pmdb's bounded ones:
pmdb.types.lists (rbtree), pmdb.os.linux.mm.xarray and pmdb.os.linux.mm.maple.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.os.linux.mm.maple import MapleLayout, MapleNode, MapleSlot, MapleWalk, is_node, tree_height
from pmdb.os.linux.mm.xarray import XaLayout, XaWalk
from pmdb.output import Hex
from pmdb.types.lists import rbtree_positions
from pmdb.types.model import Type
from pmdb.types.value import Object, follow_path, path_offset

from .lists import _show_spec, _struct_type, symbol_namer

TREE_USAGE = ("[-t rbtree|xarray|radix|maple] [-r offset] [-o offset] [-s struct[.member,...]] [-x|-d] "
              "[-l] [-p] [-v] [-N] start")
TREE_OPTS = {"t:": "kind", "r:": "root_offset", "o:": "node_offset", "s:": "show", "S:": "show",
             "x": "hex", "d": "decimal", "l": "linear", "p": "position", "v": "verbose", "N": "node"}
KINDS = {"rbtree": "rbtree", "rb": "rbtree", "xarray": "xarray", "x": "xarray", "radix": "xarray",
         "ra": "xarray", "maple": "maple", "m": "maple"}


@dcmd("tree", addr="none", synopsis="crash's tree: a red-black tree's, an XArray's or a maple tree's entries",
      example="tree -t rbtree -o vmap_area.rb_node vmap_area_root", usage=TREE_USAGE)
def tree(ctx: Context, *args: Any) -> None:
    """``tree -t TYPE [options] START``: each entry's address, as crash prints it.
    START is an rb_root, xarray (radix_tree_root) or maple_tree, or a structure holding one
    at ``-r OFFSET`` (bytes, or struct.member); with -N it is a node (rb_node, xa_node,
    encoded maple node). rbtree: ``-o OFFSET`` is the rb_node's place in its structure (the
    entry is the node less it), nodes root first unless -l (in order), -p shows
    ``root/l/r`` paths. xarray and maple: -p shows each entry's index and slot path; maple
    -v dumps every node as the kernel's mt_dump does. -s prints members of each entry
    (-x / -d: integers in hex / decimal). Walks are bounded and loop-safe."""
    positional, opts = parse_options("tree", TREE_OPTS, args, TREE_USAGE)
    kind = KINDS.get(str(opts.get("kind", "rbtree")))
    if kind is None:
        raise CommandError(f"tree: unknown tree type {opts['kind']!r} (rbtree, xarray, radix or maple)")
    if len(positional) != 1:
        raise CommandError(f"tree: one start address is needed (usage: tree {TREE_USAGE})")
    if "node_offset" in opts and kind != "rbtree":
        raise CommandError("tree: -o is for red-black trees only")
    if opts.get("verbose") and kind != "maple":
        raise CommandError("tree: -v is for maple trees only")
    start = ctx.value(str(positional[0]), what="start address")
    if "root_offset" in opts and not opts.get("node"):
        start += _offset(ctx, str(opts["root_offset"]))
    show = _show_spec(ctx, str(opts["show"])) if "show" in opts else None
    radix = 16 if opts.get("hex") else 10 if opts.get("decimal") else 0
    walks = {"rbtree": _rbtree, "xarray": _xarray, "maple": _maple}
    for addr, extra in walks[kind](ctx, start, opts):
        if addr is None:                      # a maple -v line that is not an entry
            ctx.out.line(extra[0])
            continue
        lines = [f"{addr:x}", *extra] if not (kind == "maple" and opts.get("verbose")) else list(extra)
        if show is not None and addr:
            lines += _members(ctx, addr, show[0], show[1], radix)
        ctx.out.record({"address": Hex(addr)}, text=lines)


def _offset(ctx: Context, spec: str) -> int:
    """crash's offset: ``struct.member`` or a number of bytes."""
    if "." in spec and not spec[:1].isdigit():
        name, _, member = spec.partition(".")
        return path_offset(_struct_type(ctx, name), member)[0] // 8
    return ctx.value(spec, radix=10, what="offset")


Walk = Iterator[tuple[int | None, list[str]]]


def _rbtree(ctx: Context, start: int, opts: dict[str, Any]) -> Walk:
    mem = ctx.target.memory
    node_type = ctx.target.types.lookup("struct rb_node")
    left, right = (node_type.find_member(m) for m in ("rb_left", "rb_right"))
    assert left is not None and right is not None
    node_off = _offset(ctx, str(opts["node_offset"])) if "node_offset" in opts else 0
    root = start if opts.get("node") else mem.ptr(start)
    for node, pos in rbtree_positions(mem, root, left[1] // 8, right[1] // 8, linear=bool(opts.get("linear"))):
        yield node - node_off, [f"  position: {pos}"] if opts.get("position") else []


def _xarray(ctx: Context, start: int, opts: dict[str, Any]) -> Walk:
    walk = XaWalk(ctx.target.memory, XaLayout.from_types(ctx.target.types))
    entries = walk.node(start) if opts.get("node") else walk.array(start)
    for e in entries:
        path = "root" + "".join(f"/{i}" for i in e.path[:-1]) if e.path else "direct"
        slot = e.path[-1] if e.path else 0
        yield e.entry, [f"  index: {e.index}  position: {path}/{slot}"] if opts.get("position") else []


def _maple(ctx: Context, start: int, opts: dict[str, Any]) -> Walk:
    mem = ctx.target.memory
    lay = MapleLayout.from_types(ctx.target.types)
    verbose, position = bool(opts.get("verbose")), bool(opts.get("position"))
    walk = MapleWalk(mem, lay, empty=verbose)
    pending: list[str] = []
    if verbose:
        walk.on_node = lambda n: pending.append(_maple_node_line(lay, n))
    if opts.get("node"):
        slots, prefix = walk.node(start), "direct"
    else:
        root, flags = mem.ptr(start + lay.root), mem.u32(start + lay.flags)
        if verbose:
            yield None, [f"maple_tree({start:x}) flags {flags:X}, height {tree_height(flags)} root {root:#x}"]
            yield None, [""]
        slots, prefix = walk.tree(start), "root" if is_node(root) else ""
    index = 0
    for s in slots:
        for line in pending:
            yield None, [line]
        pending.clear()
        lines = [_maple_entry_line(s)] if verbose else []
        if s.entry:
            index += 1
            if position:
                lines.append(f"  index: {index}  position: {prefix}" + "".join(f"/{i}" for i in s.path))
        if s.entry or verbose:
            yield s.entry, lines
    for line in pending:
        yield None, [line]


def _range(first: int, last: int, depth: int) -> str:
    """mt_dump_range: ``first-last: `` indented two spaces a level (one index: ``first: ``)."""
    return "  " * depth + (f"{first}: " if first == last else f"{first}-{last}: ")


def _ptr(value: int) -> str:
    """%p as glibc prints it."""
    return f"{value:#x}" if value else "(nil)"


def _maple_node_line(lay: MapleLayout, n: MapleNode) -> str:
    """crash's dump_mt_node and the node's contents (dump_mt_range64 / dump_mt_arange64)."""
    w = lay.word
    text = _range(n.first, n.last, n.depth) + f"node {n.address:#x} depth {n.depth} type {n.type} parent {_ptr(n.parent)}"
    if n.type in (1, 2):
        slots = n.words[lay.r64_slot // w:lay.r64_slot // w + lay.r64_slots]
        pivots = n.words[lay.r64_pivot // w:lay.r64_pivot // w + lay.r64_slots - 1]
        body = "".join(f"{_ptr(s)} {p} " for s, p in zip(slots, pivots, strict=False)) + _ptr(slots[-1])
        return f"{text} contents: {body}"
    if n.type == 3:
        slots = n.words[lay.a64_slot // w:lay.a64_slot // w + lay.a64_slots]
        pivots = n.words[lay.a64_pivot // w:lay.a64_pivot // w + lay.a64_slots - 1]
        gaps = n.words[lay.a64_gap // w:lay.a64_gap // w + lay.a64_slots]
        meta = n.words[lay.a64_meta // w].to_bytes(w, "little")
        body = "".join(f"{g} " for g in gaps) + f"| {meta[0]:02X} {meta[1]:02X}| "
        body += "".join(f"{_ptr(s)} {p} " for s, p in zip(slots, pivots, strict=False)) + _ptr(slots[-1])
        return f"{text} contents: {body}"
    return text


def _maple_entry_line(s: MapleSlot) -> str:
    """crash's dump_mt_entry: the range, then the entry (a value, the zero entry, a
    reserved one, or a pointer)."""
    e = s.entry
    if e & 1:
        what = f"value {e >> 1} ({e >> 1:#x}) [{e:#x}]"
    elif e == (257 << 2) | 2:
        what = "zero (257)"
    elif e < 4096 and e & 3 == 2:
        what = f"UNKNOWN ENTRY ({e:#x})"
    else:
        what = f"{e:#x}"
    return _range(s.first, s.last, s.depth + 1) + what


def _members(ctx: Context, addr: int, node_type: Type, members: list[str], radix: int) -> list[str]:
    """crash's -s lines for one entry (the list command's), integers in -x / -d radix."""
    from .lists import _show
    if not members or not radix:
        return _show(ctx, addr, node_type, members)
    obj = Object(ctx.target.memory, node_type, addr)
    describe = symbol_namer(ctx)
    out = []
    for path in members:
        value = follow_path(obj, path)
        if value.kind in ("int", "enum", "pointer"):
            text = f"{int(value):#x}" if radix == 16 else str(int(value))
        else:
            from pmdb.types.gdbprint import gdb_value
            text = gdb_value(value, describe, 1)
        out.append(f"  {path} = {text},")
    return out
