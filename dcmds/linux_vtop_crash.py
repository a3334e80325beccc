"""crash's ``vtop`` layout, which differs from ``::vtop``'s: a user address is walked
through the task's own tables and shown with its VMA; a kernel address through the
kernel's, the top table by its virtual address; both end with the leaf entry's PTE
flags and the page's ``kmem -p`` line.

Layout facts come from crash 8.0.6's output on the fixture dumps (x86-64): the user
column is UVADDR_PRLEN wide, the kernel one VADDR_PRLEN; PTE and PHYSICAL headings are
centred on their values' widths.
"""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.commands import Context
from pmdb.errors import CommandError
from pmdb.os.linux.arch import Translation
from pmdb.os.linux.fs import Fs
from pmdb.os.linux.mm.kernel_memory import KernelMemory
from pmdb.os.linux.mm.pages import PageLayout, flag_names, read_page
from pmdb.os.linux.mm.vma import Vma, read_vma, vma_addresses
from pmdb.os.linux.tasks.tasks import Task

from .crash_layout import mkstring, widths
from .linux_memory import page_header, page_line, page_paddr_width
from .linux_vm import vma_header, vma_line

_HUGE = {1 << 21: "(2MB)", 1 << 30: "(1GB)"}
_KERNEL_TOP_TABLES = ("init_top_pgt", "swapper_pg_dir")


def is_user_address(ctx: Context, addr: int) -> bool:
    """Below the kernel's half: the top bit clear on 64-bit, below PAGE_OFFSET on 32-bit."""
    kernel = ctx.kernel
    if kernel.mem.ptr_size == 8:
        return addr < 1 << 63
    return addr < kernel.km.layout.page_offset_base


def crash_vtop_lines(ctx: Context, parts: KernelMemory, addr: int, task: Task | None,
                     user: bool, page_heading: bool = True) -> list[str]:
    """One address as crash's vtop prints it; ``task`` gives the user tables and VMAs."""
    w = widths(ctx.kernel.mem.ptr_size)
    col = w.uvaddr if user else w.vaddr
    head = f"{mkstring('VIRTUAL', col)}  {mkstring('PHYSICAL', 16)}"
    value = mkstring(f"{addr:x}", w.uvaddr if is_user_address(ctx, addr) else w.vaddr)
    if user:
        if task is None:
            raise CommandError("vtop: a user address needs a task (set PID, or vtop -c PID)")
        vma = _vma_of(ctx, task.mm, addr) if task.mm else None    # a kernel thread has none
        if vma is None or not is_user_address(ctx, addr):
            return [head, f"{value}  (not accessible)", ""]
        tr = parts.vtop(addr, ctx.kernel.page_table_of(task.address))
        lines = [head, f"{value}  {_phys(tr)}", "", *_walk(tr, first=0)]
    else:
        if is_user_address(ctx, addr):
            # crash pads this one value to 8 columns whatever the pointer size
            return [head, f"{mkstring(f'{addr:x}', 8)}  (not a kernel virtual address)", ""]
        tr = parts.vtop(addr)
        lines = [head, f"{value}  {_phys(tr)}", "", f"PGD DIRECTORY: {_top_table(ctx, tr):x}"]
        if tr.entries:
            lines.append(f"PAGE DIRECTORY: {tr.entries[0].value:x}")
        lines += _walk(tr, first=1)
    if tr.phys is not None:
        base = tr.phys & ~(tr.page_size - 1)
        huge = _HUGE.get(tr.page_size)
        lines.append(f"  PAGE: {base:x}  {huge}" if huge else f"  PAGE: {base:x}" + ("  " if user else ""))
    lines.append("")
    if tr.phys is not None:
        lines += [*_pte_lines(tr), ""]
    if user:
        assert vma is not None and task is not None
        lines += [*_vma_lines(ctx, vma), ""]
    if tr.phys is not None:
        lines += _page_lines(ctx, tr.phys)[0 if page_heading else 1:]
    return lines


def _phys(tr: Translation) -> str:
    return "(not mapped)" if tr.phys is None else mkstring(f"{tr.phys:x}", 16)


def _walk(tr: Translation, first: int) -> Iterator[str]:
    for e in tr.entries[first:]:
        yield f"{e.level:>6}: {e.address:x} => {e.value:x}"


def _top_table(ctx: Context, tr: Translation) -> int:
    """The kernel's top table by its virtual address, as crash names it."""
    for name in _KERNEL_TOP_TABLES:
        addr = ctx.kernel.lookup(name)
        if addr is not None:
            return addr
    return ctx.kernel.km.layout.page_offset_base + tr.root


def _pte_lines(tr: Translation) -> list[str]:
    leaf = tr.entries[-1]
    pte, phys = f"{leaf.value:x}", f"{tr.phys & ~(tr.page_size - 1):x}" if tr.phys is not None else ""
    a, b = max(len(pte), 3), max(len(phys), 8)
    return [f"{mkstring('PTE', a, 'center')}  {mkstring('PHYSICAL', b, 'center')}  FLAGS",
            f"{mkstring(pte, a, 'center-right')}  {mkstring(phys, b, 'center-right')}  ({leaf.flags})"]


def _vma_of(ctx: Context, mm: int, addr: int) -> Vma | None:
    kernel = ctx.kernel
    for at in vma_addresses(kernel.mem, kernel.types, kernel.offsets, mm):
        vma = read_vma(kernel.mem, kernel.offsets, at)
        if vma.start <= addr < vma.end:
            return vma
    return None


def _vma_lines(ctx: Context, vma: Vma) -> list[str]:
    kernel = ctx.kernel
    return [vma_header(kernel.mem.ptr_size), vma_line(kernel.mem.ptr_size, vma, Fs(kernel.mem, kernel.types))]


def _page_lines(ctx: Context, phys: int) -> list[str]:
    kernel = ctx.kernel
    km = kernel.km
    layout = PageLayout.from_kernel(km, kernel.offsets)
    w = widths(kernel.mem.ptr_size)
    paddr_width = page_paddr_width(ctx)
    page = read_page(km, layout, phys >> 12)
    return [page_header(w, paddr_width), page_line(page, w, paddr_width, flag_names(km, kernel.types))]
