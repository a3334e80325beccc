"""Kernel address dcmds: ``::vtop`` walks the page tables (crash's ``vtop``).

``::whatis`` on a kernel address is the generic ::whatis, which asks the OS
model (pmdb.os.linux.addresses.describe_kernel_address).
"""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, ParseError, PmdbError
from pmdb.language.evaluate import evaluate
from pmdb.language.parser import parse
from pmdb.memory.x86_64 import KernelSpace
from pmdb.os.linux.addresses import Translation, entry_flags, fast_path_phys, translate, with_root
from pmdb.os.linux.parts import KernelParts, kernel_parts
from pmdb.output import Hex
from pmdb.symbols.kmodules import RegistryOffsets

_SIZES = {1 << 12: "4 KB", 1 << 21: "2 MB", 1 << 30: "1 GB"}


def _value(ctx: Context, word: Any) -> int:
    """A number or an mdb expression (hex by default, symbols allowed)."""
    if isinstance(word, int):
        return word
    try:
        line = parse(str(word))
        stages = line.pipelines[0].stages if len(line.pipelines) == 1 else ()
        if len(stages) == 1 and stages[0].verb is None and stages[0].addr is not None:
            return int(evaluate(stages[0].addr, ctx.session))
    except ParseError as err:
        raise CommandError(f"bad address '{word}': {err.message}") from None
    raise CommandError(f"'{word}' is not an address")


def _parts(ctx: Context) -> KernelParts:
    parts = kernel_parts(ctx.target)
    if parts is None:
        raise CommandError("vtop needs a Linux kernel dump")
    return parts


def _task_root(ctx: Context, parts: KernelParts, word: Any) -> int:
    """The physical top-level table of a task's mm (by task address or pid)."""
    ident = _value(ctx, word)
    thread = ctx.target.thread_by_id(ident)
    task = thread.address if thread.address is not None else ident
    offsets = RegistryOffsets(ctx.target.types)
    try:
        mm = parts.space.ptr(task + offsets.offsetof("task_struct", "mm"))
        if mm == 0:
            mm = parts.space.ptr(task + offsets.offsetof("task_struct", "active_mm"))
        pgd = parts.space.ptr(mm + offsets.offsetof("mm_struct", "pgd"))
        return parts.space.vtop(pgd)[0]
    except PmdbError as err:
        raise CommandError(f"cannot find the page tables of task {task:#x}: {err}") from None


@dcmd("vtop", addr="optional", synopsis="translate a kernel virtual address through the page tables",
      example="ffffffff8ba1aa40::vtop", opts={"r:": "root", "c:": "task"}, usage="[-r pgd_phys | -c task] [addr]")
def vtop(ctx: Context, *words: Any, root: Any = None, task: Any = None) -> None:
    """Each page-table level's entry (its physical address, value and flags) and the
    physical address, as crash's vtop. The walk starts at the kernel's init_top_pgt;
    -r gives another top-level table by physical address (a CR3 value), -c a task (pid
    or task_struct address) whose mm's tables to walk. The address may follow the
    dcmd, crash-style. An address the tables do not map shows the walk up to the
    missing level."""
    parts = _parts(ctx)
    addrs = [ctx.addr] if ctx.addr is not None else [_value(ctx, w) for w in words]
    if not addrs:
        raise CommandError("vtop needs an address (addr::vtop or ::vtop addr)")
    space = parts.space
    if root is not None:
        space = with_root(space, _value(ctx, root))
    elif task is not None:
        space = with_root(space, _task_root(ctx, parts, task))
    for n, addr in enumerate(addrs):
        if n:
            ctx.out.line("")
        _show(ctx, space, parts, translate(space, addr))


def _show(ctx: Context, space: KernelSpace, parts: KernelParts, t: Translation) -> None:
    ctx.out.record({"virtual": Hex(t.vaddr), "physical": None if t.phys is None else Hex(t.phys),
                    "page_size": t.page_size, "error": t.error or None, "root": Hex(t.root),
                    "entries": [{"level": e.level, "address": Hex(e.address), "value": Hex(e.value)}
                                for e in t.entries]},
                   text=_vtop_lines(space, parts, t))
    if ctx.piped and t.phys is not None:
        ctx.emit(t.phys)


def _vtop_lines(space: KernelSpace, parts: KernelParts, t: Translation) -> list[str]:
    """crash's vtop layout: the addresses, each level's entry, the page and its struct page."""
    lines = [f"{'VIRTUAL':<17} PHYSICAL",
             f"{t.vaddr:<17x} " + (f"{t.phys:x}" if t.phys is not None else "(not mapped)"), "",
             f"{space.levels[0].name} DIRECTORY: {t.root:x} (physical)"]
    lines += [f"  {e.level:>4}: {e.address:x} => {e.value:x}  ({entry_flags(e.value, e.level)})" for e in t.entries]
    if t.phys is None:
        return [*lines, f"  {t.error}"]
    lines.append(f"  PAGE: {t.phys & ~(t.page_size - 1):x}  ({_SIZES.get(t.page_size, hex(t.page_size))})")
    layout = parts.space.layout
    if layout is not None:
        pfn = t.phys >> 12
        page = layout.vmemmap_base + pfn * parts.info.sizes.get("page", 64)
        lines.append(f"  struct page for pfn {pfn:x}: {page:x}")
    fast = fast_path_phys(parts.space, t.vaddr)
    if fast is not None and fast != t.phys:
        lines.append(f"  note: the {_rule(parts.space, t.vaddr)} rule gives {fast:x}, not the walk's address")
    return lines


def _rule(space: KernelSpace, addr: int) -> str:
    return "kernel-image" if space.image_phys(addr) is not None else "direct-map"
