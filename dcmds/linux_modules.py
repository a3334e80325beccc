"""Loaded kernel modules: crash's ``mod`` (its layout) and mdb's ``::modinfo``."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.output import Column, Dec, Hex
from pmdb.symbols.kmodules import KernelModule
from pmdb.types.value import Object

MODINFO_COLUMNS = (Column("id", "ID", align=">"), Column("address", "MODULE"),
                   Column("base", "LOADADDR"), Column("size", "SIZE", align=">"), Column("name", "NAME"))


def total_size(ctx: Context, m: KernelModule) -> int:
    """What /proc/modules and crash show as a module's size: its core region up to 6.3,
    the sum of every ``mem[]`` region (text, data, rodata...) since 6.4."""
    if ctx.kernel.types.find("struct module_memory") is None:
        return m.size
    regions = Object(ctx.target.memory, ctx.kernel.types.lookup("struct module"), m.address).member("mem")
    return sum(int(regions[i].member("size")) for i in range(regions.type.strip().count or 0))


def _by_base(ctx: Context) -> list[KernelModule]:
    """The modules in address order, as crash keeps them."""
    return sorted(ctx.kernel.modules(), key=lambda m: m.base)


@dcmd("mod", addr="none", synopsis="crash's mod: every loaded module, its struct module, base and size",
      example="mod", usage="[-s name file | -S]")
def mod(ctx: Context, *args: Any) -> None:
    """``mod``: each module's ``struct module`` address, name, base address, size and object
    file, in crash's layout ("(not loaded)  [CONFIG_KALLSYMS]": pmdb takes module symbols
    from the dump's kallsyms). Loading a module's object file (-s, -S) needs its DWARF."""
    positional, opts = parse_options("mod", {"s": "load", "S": "load_all", "d": "delete"}, args,
                                     "[-s name file | -S]")
    if opts or positional:
        raise CommandError("mod: -s/-S/-d load or drop a module's object file and debug info: "
                           "not in pmdb yet (it reads module symbols from the dump)")
    modules = _by_base(ctx)
    if not modules:
        ctx.out.line("(no modules loaded)")
        return
    width = 2 * ctx.target.arch.ptr_size
    name_w = max(len(m.name) for m in modules)
    sizes = {m.address: total_size(ctx, m) for m in modules}
    size_w = max(len(str(v)) for v in sizes.values())
    base = "TEXT_BASE" if ctx.kernel.types.find("struct module_memory") is not None else "BASE"
    header = (f"{'MODULE'.center(width)}  {'NAME'.ljust(name_w)}  {base.center(width)}  "
              f"{'SIZE'.rjust(size_w)}  OBJECT FILE")
    ctx.out.line(header)
    for m in modules:
        text = (f"{m.address:{width}x}  {m.name.ljust(name_w)}  {m.base:{width}x}  "
                f"{str(sizes[m.address]).rjust(size_w)}  (not loaded)  [CONFIG_KALLSYMS]")
        ctx.out.record({"address": Hex(m.address), "name": m.name, "base": Hex(m.base),
                        "size": Dec(sizes[m.address])}, text=[text])


@dcmd("modinfo", addr="none", synopsis="list the loaded kernel modules", example="::modinfo")
def modinfo(ctx: Context) -> None:
    """Each loaded module: its index, ``struct module`` address, load address, size and
    name, in address order (mdb's ::modinfo, for Linux modules)."""
    rows = [[Dec(i), Hex(m.address), Hex(m.base), Dec(total_size(ctx, m)), m.name]
            for i, m in enumerate(_by_base(ctx))]
    ctx.out.table(MODINFO_COLUMNS, rows)
