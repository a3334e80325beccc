"""Kernel address dcmds: ``::vtop`` walks the page tables (crash's ``vtop``).

``::whatis`` on a kernel address is the generic ::whatis, which asks the OS
model (pmdb.os.linux.mm.addresses.describe_kernel_address); ::vtop asks the kernel
memory (its CPU part walks the tables).
"""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, PmdbError
from pmdb.os.linux.arch import Translation
from pmdb.os.linux.mm.kernel_memory import KernelMemory, kernel_parts
from pmdb.os.linux.tasks.tasks import Task
from pmdb.output import Hex

from .linux_files import crash_tasks
from .linux_vtop_crash import crash_vtop_lines, is_user_address

_SIZES = {1 << 12: "4 KB", 1 << 21: "2 MB", 1 << 30: "1 GB"}


def _parts(ctx: Context) -> KernelMemory:
    parts = kernel_parts(ctx.target)
    if parts is None:
        raise CommandError("vtop needs a Linux kernel dump")
    return parts


def _task_root(ctx: Context, word: Any) -> int:
    """The physical top-level table of a task's mm (by task address or pid)."""
    ident = ctx.value(word, what="address")
    thread = ctx.target.thread_by_id(ident)
    task = thread.address if thread.address is not None else ident
    kernel = ctx.kernel
    try:
        return kernel.page_table_of(task)
    except PmdbError as err:
        raise CommandError(f"cannot find the page tables of task {task:#x}: {err}") from None


@dcmd("vtop", addr="optional", synopsis="translate a kernel virtual address through the page tables",
      example="ffffffff8ba1aa40::vtop",
      opts={"r:": "root", "c:": "task", "C": "crash", "u": "user", "k": "kernel"},
      usage="[-r pgd_phys | -c task] [-C [-u | -k]] [addr]")
def vtop(ctx: Context, *words: Any, root: Any = None, task: Any = None, crash: bool = False,
         user: bool = False, kernel: bool = False) -> None:
    """Each page-table level's entry (its physical address, value and flags) and the
    physical address. The walk starts at the kernel's init_top_pgt;
    -r gives another top-level table by physical address (a CR3 value), -c a task (pid
    or task_struct address) whose mm's tables to walk. The address may follow the
    dcmd, crash-style. An address the tables do not map shows the walk up to the
    missing level. -C is crash's vtop (the crash word ``vtop`` runs it): a user address
    through the current (or -c) task's tables with its VMA, a kernel address through the
    kernel's, each with its page's kmem -p line; -u / -k say which the address is."""
    parts = _parts(ctx)
    addrs = [ctx.addr] if ctx.addr is not None else [ctx.value(w, what="address") for w in words]
    if not addrs:
        raise CommandError("vtop needs an address (addr::vtop or ::vtop addr)")
    if user and kernel:
        raise CommandError("vtop: -u and -k are exclusive")
    if crash:
        _crash_vtop(ctx, parts, addrs, task, user, kernel)
        return
    table = None
    if root is not None:
        table = ctx.value(root, what="address")
    elif task is not None:
        table = _task_root(ctx, task)
    for n, addr in enumerate(addrs):
        if n:
            ctx.out.line("")
        _show(ctx, parts, parts.vtop(addr, table))


def _crash_vtop(ctx: Context, parts: KernelMemory, addrs: list[int], task_word: Any, user: bool,
                kernel: bool) -> None:
    task: Task | None = None
    if task_word is not None:
        task = crash_tasks(ctx, [task_word], "vtop")[0]    # a pid in decimal or a task, as crash
    else:
        current = ctx.target.current_thread
        if current is not None and current.address is not None:
            task = ctx.kernel.task(current.address)
    crash_vtop(ctx, parts, addrs, task, user=user, kernel=kernel, headed=[False])


def crash_vtop(ctx: Context, parts: KernelMemory, addrs: list[int], task: Task | None, *, user: bool,
               kernel: bool, headed: list[bool], spaced: bool = True) -> None:
    """crash's vtop of each address in ``task``'s context. crash heads only the first page
    line of one command (foreach's too): ``headed`` says whether that has been printed;
    ``spaced``: a blank line between addresses (not under foreach)."""
    for n, addr in enumerate(addrs):
        if n and spaced:
            ctx.out.line("")
        as_user = user or (not kernel and is_user_address(ctx, addr))
        lines = crash_vtop_lines(ctx, parts, addr, task, as_user, page_heading=not headed[0])
        headed[0] = headed[0] or any(line.lstrip().startswith("PAGE ") for line in lines)
        ctx.out.record({"virtual": Hex(addr)}, text=lines)


def _show(ctx: Context, parts: KernelMemory, t: Translation) -> None:
    ctx.out.record({"virtual": Hex(t.vaddr), "physical": None if t.phys is None else Hex(t.phys),
                    "page_size": t.page_size, "error": t.error or None, "root": Hex(t.root),
                    "entries": [{"level": e.level, "address": Hex(e.address), "value": Hex(e.value)}
                                for e in t.entries]},
                   text=_vtop_lines(parts, t))
    if ctx.piped and t.phys is not None:
        ctx.emit(t.phys)


def _vtop_lines(parts: KernelMemory, t: Translation) -> list[str]:
    """crash's vtop layout: the addresses, each level's entry, the page and its struct page."""
    lines = [f"{'VIRTUAL':<17} PHYSICAL",
             f"{t.vaddr:<17x} " + (f"{t.phys:x}" if t.phys is not None else "(not mapped)"), "",
             f"{t.root_level} DIRECTORY: {t.root:x} (physical)"]
    lines += [f"  {e.level:>4}: {e.address:x} => {e.value:x}  ({e.flags})" for e in t.entries]
    if t.phys is None:
        return [*lines, f"  {t.error}"]
    lines.append(f"  PAGE: {t.phys & ~(t.page_size - 1):x}  ({_SIZES.get(t.page_size, hex(t.page_size))})")
    pfn = t.phys >> 12
    lines.append(f"  struct page for pfn {pfn:x}: {parts.page_struct(pfn):x}")
    fast = parts.fast_path(t.vaddr)
    if fast is not None and fast[1] != t.phys:
        lines.append(f"  note: the {fast[0]} rule gives {fast[1]:x}, not the walk's address")
    return lines
