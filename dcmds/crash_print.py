"""crash's ``p EXPR``: a kernel variable or member path printed as gdb prints it.

gdb knows every global's type from DWARF; pmdb opens a dump with its BTF, which
types only per-CPU variables. A symbol's type therefore comes from the type sources
(BTF's per-CPU variables, DWARF when loaded), else from the few globals whose type
the kernel's headers fix and pmdb's kernel model already reads that way. For any
other global ``p`` says it cannot know the type (and how to cast), never guesses.
"""

from __future__ import annotations

import re
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.types.gdbprint import gdb_value
from pmdb.types.model import Type
from pmdb.types.value import Object, follow_path

from .lists import symbol_namer

P_USAGE = "[-x | -d] expression"
_EXPR = re.compile(r"^(?P<deref>\*)?\s*(?:\(\s*(?P<cast>[^()]+?)\s*\)\s*)?(?P<base>[A-Za-z_]\w*|0x[0-9a-fA-F]+|\d+)"
                   r"(?P<path>(?:\s*(?:\.|->)\s*[A-Za-z_]\w*|\s*\[\s*\w+\s*\])*)\s*$")


@dcmd("p", addr="none", synopsis="crash's p: print a variable or member path as gdb does",
      example="p init_task.comm", usage=P_USAGE)
def p_cmd(ctx: Context, *args: Any) -> None:
    """``p [-x|-d] EXPR`` (``p/x`` and ``p/d`` arrive as -X and -D): EXPR is a symbol, ``(type *)ADDR``, a member path
    after either (``init_task.fs->root``), an index, or any of those behind ``*``. The
    value is printed as ``$N = ...`` as gdb does (``name = $N = ...`` for a bare symbol,
    as crash does)."""
    positional, opts = parse_options("p", {"x": "hex", "d": "dec", "h": "hex", "X": "slash_x",
                                           "D": "slash_d"}, args, P_USAGE)
    if not positional:
        raise CommandError(f"p: an expression is needed (usage: p {P_USAGE})")
    text = " ".join(str(w) for w in positional)
    obj, bare = _evaluate(ctx, text)
    if isinstance(obj, str):            # a cast address: gdb prints the pointer itself
        history = ctx.store("crash_print.history", lambda: [0])
        history[0] += 1
        ctx.out.line(f"${history[0]} = {obj}")
        return
    history = ctx.store("crash_print.history", lambda: [0])
    history[0] += 1
    hexa = opts.get("hex") or opts.get("slash_x")
    value = _hex(obj) if hexa else gdb_value(obj, symbol_namer(ctx))
    # crash names a bare symbol before gdb's $N, except after gdb's own /x or /d (-X, -D)
    leader = f"{text} = " if bare and not (opts.get("slash_x") or opts.get("slash_d")) else ""
    ctx.out.line(f"{leader}${history[0]} = {value}")


def _evaluate(ctx: Context, text: str) -> tuple[Object | str, bool]:
    """The Object an expression names (gdb's text for a bare cast pointer), and whether it
    was a bare symbol. After a cast, a member path goes through the pointer."""
    m = _EXPR.match(text)
    if m is None:
        raise CommandError(f"p: pmdb reads symbols, (type *)addresses, member paths, [i] and "
                           f"a leading *; not '{text}'")
    base, cast, path = m["base"], m["cast"], m["path"].strip()
    types = ctx.target.types
    if cast:
        t = types.lookup(cast)
        addr = ctx.value(base, what="address")
        if t.strip().kind != "pointer" or t.strip().target is None:
            raise CommandError(f"p: cast to a pointer type ((struct x *)addr), not ({cast})")
        if not (path or m["deref"]):
            name = symbol_namer(ctx)(addr)
            return f"({cast}) {addr:#x}" + (f" <{name}>" if name else ""), False
        obj = Object(ctx.target.memory, t.strip().target, addr)      # type: ignore[arg-type]
        return follow_path(obj, path.lstrip(".").removeprefix("->")) if path else obj, False
    else:
        if not base[0].isalpha() and base[0] != "_":
            raise CommandError(f"p: a bare number has no type: cast it ((struct x *){base})")
        obj = Object(ctx.target.memory, _symbol_type(ctx, base), _symbol_address(ctx, base))
    if path:
        obj = follow_path(obj, path.lstrip("."))
    if m["deref"]:
        obj = obj.deref()
    return obj, not (cast or path or m["deref"])


def _symbol_address(ctx: Context, name: str) -> int:
    sym = ctx.target.symbols.lookup(name)
    if sym is None:
        raise CommandError(f'p: no symbol "{name}" in current context.')
    return sym.addr


def _symbol_type(ctx: Context, name: str) -> Type:
    """A global's type: from the type sources (BTF, DWARF, the kernel headers' declarations
    of the usual globals: pmdb.os.linux.declarations)."""
    t = ctx.target.types.variable_type(name)
    if t is not None:
        return t
    _symbol_address(ctx, name)
    raise CommandError(f"p: the type of {name} is not in the kernel's BTF (which types only per-CPU "
                       f"variables): cast its address, e.g. p *(unsigned long *){name}")


def _hex(obj: Object) -> str:
    """gdb's /x of a scalar; aggregates are printed as without /x."""
    kind = obj.kind
    if kind not in ("int", "bool", "enum", "pointer"):
        raise CommandError(f"p -x: pmdb prints integers and pointers in hex, not a {kind}")
    return f"{int(obj) & ((1 << 8 * obj.size) - 1):#x}"
