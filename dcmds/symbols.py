"""Symbols and addresses: ::nm lists symbols, ::whatis says what an address is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pmdb.commands import Context, dcmd
from pmdb.errors import SymbolError
from pmdb.output import Column, Hex
from pmdb.symbols.table import Symbol
from pmdb.threads import Mapping

if TYPE_CHECKING:     # the DWARF object layer loads with user cores only
    from pmdb.symbols.objfile import ObjectFile

_TYPES = {"func": "FUNC", "object": "OBJT", "other": "NOTY"}
_BINDS = {"global": "GLOB", "local": "LOCL", "weak": "WEAK"}


def _qualified(sym: Symbol) -> str:
    return f"{sym.module}`{sym.name}" if sym.module else sym.name


def _module_ok(sym: Symbol, module: str | None) -> bool:
    if module is None:
        return True
    if sym.module is None:
        return module in ("a.out", "")
    return sym.module == module or sym.module.split(".so")[0] == module


@dcmd("nm", synopsis="list symbols: value, size, type, binding, name",
      example="::nm -f 'g_*'", opts={"f:": "pattern", "m:": "module", "g": "global_only"},
      usage="[-g] [-f glob] [-m module]")
def nm(ctx: Context, pattern: str | None = None, module: str | None = None, global_only: bool = False) -> None:
    """Every symbol of the executable and its libraries in address order, as mdb's ::nm
    prints them; -f keeps names matching a glob, -m one module (``libc`` or ``a.out`` for the
    executable), -g global and weak symbols only. With an address, the symbol containing it.
    Piped, the symbols' addresses go on."""
    symbols = ctx.target.symbols
    if ctx.addr is not None:
        hit = symbols.resolve(ctx.addr)
        if hit is None:
            raise SymbolError(f"no symbol contains {ctx.addr:#x}")
        chosen: Iterable[Symbol] = [hit[0]]
    else:
        chosen = symbols.search(pattern) if pattern else iter(symbols)
    rows = [s for s in chosen if _module_ok(s, module) and not (global_only and s.binding == "local")]
    if module is not None and not rows and ctx.addr is None:
        raise SymbolError(f"no symbols in module '{module}'")
    if ctx.piped:
        for s in rows:
            ctx.emit(s.addr)
        return
    width = ctx.target.arch.ptr_size * 2
    ctx.out.table(NM_COLUMNS, [[Hex(s.addr, width, prefix=True), Hex(s.size, width, prefix=True),
                                _TYPES.get(s.kind, "NOTY"), _BINDS.get(s.binding, "GLOB"), _qualified(s)]
                               for s in rows])


NM_COLUMNS = (Column("value", "Value"), Column("size", "Size"), Column("type", "Type"),
              Column("bind", "Bind"), Column("name", "Name"))


# -- ::whatis --------------------------------------------------------------------------


def _mapping_at(mappings: Sequence[Mapping], addr: int) -> Mapping | None:
    return next((m for m in mappings if m.start <= addr < m.end), None)


def _stack_owner(ctx: Context, m: Mapping) -> str | None:
    sp_name = ctx.target.arch.sp
    for t in ctx.target.threads():
        sp = t.registers.get(sp_name)
        if sp is not None and m.start <= sp + ctx.target.arch.stack_bias < m.end:
            return f"the stack of thread {t.index} (id {t.id})"
    return None


def _is_heap(ctx: Context, mappings: Sequence[Mapping], m: Mapping) -> bool:
    """The brk heap: the first anonymous mapping after the executable, before any file."""
    main = _main_object(ctx)
    if main is None or m.path or m.start < main.end:
        return False
    between = [x for x in mappings if main.end <= x.start < m.start]
    return not between


def describe_mapping(ctx: Context, addr: int) -> str | None:
    """Which mapping holds addr, in words: a file (with offset), the heap or a thread's stack."""
    mappings = list(ctx.target.os.mappings())
    m = _mapping_at(mappings, addr)
    if m is None:
        return None
    span = f"{m.start:x}-{m.end:x} {m.perms}"
    missing = "" if m.in_dump else ", not in the dump"
    if m.path and not m.path.startswith("["):
        return f"in {m.path} (mapping {span}, file offset {m.offset + addr - m.start:#x}{missing})"
    stack = _stack_owner(ctx, m)
    if stack:
        return f"in {stack} (mapping {span}{missing})"
    if m.path == "[heap]" or (not m.path and _is_heap(ctx, mappings, m)):
        return f"in the heap (mapping {span}{missing})"
    if m.path:      # [vdso], [vvar], [stack] of no thread ... as /proc/PID/maps names them
        return f"in {m.path} (mapping {span}{missing})"
    return f"in anonymous memory (mapping {span}{missing})"


def _describe_symbol(ctx: Context, addr: int) -> str | None:
    hit = ctx.target.symbols.resolve(addr)
    if hit is None:
        return None
    sym, off = hit
    if not sym.contains(addr) and sym.size:
        return None
    what = {"func": "function", "object": "variable"}.get(sym.kind, "symbol")
    where = sym.module or _main_name(ctx)
    size = f", size {sym.size:#x}" if sym.size else ""
    vtype = ctx.target.types.variable_type(sym.name) if sym.kind == "object" else None
    typed = f" ({vtype})" if vtype is not None else ""
    return f"{ctx.target.describe(addr)}, in {what} {_qualified(sym)}{typed}{size} of {where}"


def _main_object(ctx: Context) -> ObjectFile | None:
    """The executable's object on a user core (None elsewhere, or when it was not found)."""
    from pmdb.os.user.process import UserProcess

    os_model = ctx.target.os
    return os_model.main_object() if isinstance(os_model, UserProcess) else None


def _main_name(ctx: Context) -> str:
    main = _main_object(ctx)
    return main.name if main is not None else "the executable"


@dcmd("whatis", addr="required", synopsis="say what an address is: symbol, mapping, heap or stack",
      example="g_table::whatis", usage="")
def whatis(ctx: Context, *_args: Any) -> None:
    """The function or global containing the address (symbol+offset, its type when DWARF
    knows it, its object), and the mapping it lies in: a file, the heap, a thread's stack or
    anonymous memory."""
    addr = ctx.require_addr()
    # a kernel knows its address space better (slab objects, regions, task stacks)
    lines = ctx.kernel.describe_address(ctx.target, addr) if ctx.is_kernel else None
    if not lines:
        parts = [p for p in (_describe_symbol(ctx, addr), describe_mapping(ctx, addr)) if p]
        lines = [f"{addr:x} is " + "; ".join(parts or ["not in any mapping of the dump"])]
    ctx.out.record({"address": Hex(addr), "description": lines}, text=lines)
    if ctx.piped:
        ctx.emit(addr)

