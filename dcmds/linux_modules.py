"""Loaded kernel modules: crash's ``mod`` (its layout) and mdb's ``::modinfo``."""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError
from pmdb.os.linux.debuginfo import KernelDebugInfo
from pmdb.output import Column, Dec, Hex
from pmdb.symbols.kmodules import KernelModule
from pmdb.types.value import Object

from .source_lines import kernel_debuginfo

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
      example="mod", usage="[-s name file | -d name | -S [directory]]")
def mod(ctx: Context, *args: Any) -> None:
    """``mod``: each module's ``struct module`` address, name, base address, size and object
    file, in crash's layout ("(not loaded)  [CONFIG_KALLSYMS]": pmdb takes module symbols
    from the dump's kallsyms). ``mod -s NAME FILE`` reads the module's debug file (its .ko
    with DWARF), relocated to where the dump's module was loaded: its types (``::print``,
    ``::sizeof``) and source lines (``bt -l``, ``dis -l``); ``mod -d NAME`` drops it; ``mod -S
    [DIR]`` reads every module's debug file found in Debian's -dbg layout under DIR (else
    pmdb.toml's debuginfo.directories): lib/modules/RELEASE/**/NAME.ko, or
    .build-id/xx/rest.debug by the build-id the loaded module carries."""
    positional, opts = parse_options("mod", {"s": "load", "S": "load_all", "d": "delete"}, args,
                                     "[-s name file | -d name]")
    info = kernel_debuginfo(ctx)
    if "load_all" in opts:
        if len(positional) > 1:
            raise CommandError("mod: usage: mod -S [DIRECTORY]")
        where = [str(positional[0])] if positional else info.directories
        if not info.load_all(where):
            raise CommandError(f"mod -S: no module's debug file under {', '.join(where) or '(no directory)'}")
        _table(ctx, info)
        return
    if "load" in opts or "delete" in opts:
        if "load" in opts and len(positional) != 2 or "delete" in opts and len(positional) != 1:
            raise CommandError("mod: usage: mod -s NAME FILE | mod -d NAME")
        name = str(positional[0])
        if "delete" in opts:
            if not info.drop_module(name):
                raise CommandError(f"mod: {name}: no debug file is loaded for it")
            _table(ctx, info, only=name)
            return
        info.load_module(name, str(positional[1]))
        _table(ctx, info, only=name)
        return
    if positional:
        raise CommandError("mod: usage: mod [-s NAME FILE | -d NAME]")
    _table(ctx, info)


def _table(ctx: Context, info: KernelDebugInfo, only: str | None = None) -> None:
    """crash's module table (``only``: that module's row, in the widths of the whole table);
    OBJECT FILE is the debug file read for a module, as it was named."""
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
        if only is not None and m.name != only:
            continue
        loaded = info.modules.get(m.name)
        where = f"{loaded.path} " if loaded is not None else "(not loaded)  [CONFIG_KALLSYMS]"
        text = (f"{m.address:{width}x}  {m.name.ljust(name_w)}  {m.base:{width}x}  "
                f"{str(sizes[m.address]).rjust(size_w)}  {where}")
        ctx.out.record({"address": Hex(m.address), "name": m.name, "base": Hex(m.base),
                        "size": Dec(sizes[m.address])}, text=[text])


@dcmd("modinfo", addr="none", synopsis="list the loaded kernel modules", example="::modinfo")
def modinfo(ctx: Context) -> None:
    """Each loaded module: its index, ``struct module`` address, load address, size and
    name, in address order (mdb's ::modinfo, for Linux modules)."""
    rows = [[Dec(i), Hex(m.address), Hex(m.base), Dec(total_size(ctx, m)), m.name]
            for i, m in enumerate(_by_base(ctx))]
    ctx.out.table(MODINFO_COLUMNS, rows)
