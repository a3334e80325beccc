"""Memory usage on a Linux dump: crash's ``kmem -i``, ``-V``, ``-v`` and ``-p``, and mdb's ``::memstat``.

The numbers come from pmdb.os.linux.meminfo (the kernel's counters, crash's kmem -i),
pmdb.os.linux.mm.vmalloc (vmap areas) and pmdb.os.linux.mm.pages (struct pages);
dcmds/linux_kmem.py's ``kmem`` dispatches its -i -V -v -p options here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.errors import CommandError, FaultError, PmdbError
from pmdb.os.linux.meminfo import MemSummary, free_pages, kmem_summary, vm_events, vm_stat
from pmdb.os.linux.mm.pages import Page, PageLayout, flag_names, pages, present_sections, read_page
from pmdb.os.linux.mm.vmalloc import vmap_areas
from pmdb.os.linux.sysinfo import format_memory
from pmdb.output import Column, Dec
from pmdb.progress import bar_or_nothing

from .crash_layout import mkstring, widths

_MB = 1 << 20


def pages_to_size(pages: int, page_size: int) -> str:
    """crash's pages_to_size: "0", "N KB", "N.N MB" or "N.N GB" (".0" dropped)."""
    return format_memory(pages, page_size, round_gb=False) if pages else "0"


def _summary_lines(s: MemSummary, page_size: int, shared_text: str | None) -> Iterator[str]:
    def row(name: str, n: int, of: str | None, whole: int) -> str:
        tail = "        ----" if of is None else f" {n * 100 // whole if whole else 0:3d}% of {of}"
        return f"{name:>13}  {n:7d}  {pages_to_size(n, page_size):>11} {tail}"

    yield "                 PAGES        TOTAL      PERCENTAGE"
    yield row("TOTAL MEM", s.total, None, s.total)
    yield row("FREE", s.free, "TOTAL MEM", s.total)
    yield row("USED", s.total - s.free, "TOTAL MEM", s.total)
    yield row("SHARED", s.shared, "TOTAL MEM", s.total) if s.shared is not None else f"{'SHARED':>13}  {shared_text}"
    for name, n in (("BUFFERS", s.buffers), ("CACHED", s.cached), ("SLAB", s.slab)):
        yield row(name, n, "TOTAL MEM", s.total)
    yield ""
    yield row("TOTAL HUGE", s.huge_total, None, 0)
    yield row("HUGE FREE", s.huge_free, "TOTAL HUGE", s.huge_total)
    yield ""
    yield row("TOTAL SWAP", s.swap_total, None, 0)
    yield row("SWAP USED", s.swap_used, "TOTAL SWAP", s.swap_total)
    yield row("SWAP FREE", s.swap_total - s.swap_used, "TOTAL SWAP", s.swap_total)
    if s.commit_limit is not None and s.committed is not None:
        yield ""
        yield row("COMMIT LIMIT", s.commit_limit, None, 0)
        yield row("COMMITTED", s.committed, "TOTAL LIMIT", s.commit_limit) if s.commit_limit \
            else row("COMMITTED", s.committed, None, 0)


def kmem_info(ctx: Context) -> None:
    """crash's kmem -i."""
    kernel = ctx.kernel
    problems: list[str] = []
    s = kmem_summary(kernel.km, kernel.vars(), problems)
    text = list(_summary_lines(s, kernel.page_size(), "(the struct pages could not be read)"))
    ctx.out.record({k: v for k, v in vars(s).items()}, text=text)
    for p in problems[:5]:
        ctx.out.error(p)


def kmem_counters(ctx: Context) -> None:
    """crash's kmem -V: the zone and node vm_stat tables and the summed vm events."""
    kernel = ctx.kernel
    kv = kernel.vars()
    tables = vm_stat(kv)
    width = max(len(n) for t in tables for n, _ in t.items)
    lines = []
    for i, t in enumerate(tables):
        lines += ([""] if i else []) + [f"  {t.title}:"] + [f"{n:>{width}}: {v}" for n, v in t.items]
    try:
        events = vm_events(kv, kernel.km.layout.per_cpu_offsets())
    except PmdbError as err:
        ctx.out.error(f"VM_EVENT_STATES: {err}")
    else:
        ewidth = max(len(n) for n, _ in events.items)
        lines += ["", f"  {events.title}:"] + [f"{n:>{ewidth}}: {v}" for n, v in events.items]
    ctx.out.record({t.title: dict(t.items) for t in tables}, text=lines)


def kmem_vmalloc(ctx: Context, words: list[Any]) -> None:
    """crash's kmem -v [addr]: every vmap area with a vm_struct, or the one holding addr."""
    kernel = ctx.kernel
    w = widths(kernel.mem.ptr_size)
    at = ctx.value(words[0], what="address") if words else None
    gap = "" if w.vaddr > 8 else " "
    header = (f"{mkstring('VMAP_AREA', w.vaddr, 'center')}  {mkstring('VM_STRUCT', w.vaddr, 'center')}  "
              f"{mkstring('ADDRESS RANGE', 2 * w.vaddr + 3, 'center')}     SIZE")
    lines = []
    progress = bar_or_nothing(sys.stderr)     # the area count is unknown: a bar of bytes walked
    progress.start("kmem -v: every vmap area", 0)
    try:
        for va in vmap_areas(kernel.mem, kernel.types, kernel.offsets, kernel.lookup):
            progress.advance(va.end - va.start)
            if at is not None and not va.start <= at < va.end:
                continue
            lines.append(f"{mkstring(f'{va.address:x}', w.vaddr, 'center')}{gap}  "
                         f"{mkstring(f'{va.vm:x}', w.vaddr, 'center')}"
                         f"{gap}  {va.start:>{w.vaddr}x} - {va.end:<{w.vaddr}x}  {va.end - va.start:7d}")
    finally:
        progress.finish()
    if at is not None and not lines:
        raise CommandError(f"kmem -v: {at:x} is in no vmalloc area")
    ctx.out.record({}, text=[header, *lines])


def page_header(w: Any, paddr_width: int) -> str:
    return (f"{mkstring('PAGE', w.vaddr, 'center')}{w.minspace}{mkstring('PHYSICAL', paddr_width, 'right')}"
            f"{w.minspace}{mkstring('MAPPING', w.vaddr, 'center-right')}{w.minspace}"
            f"{mkstring('INDEX', 8, 'center-right')}CNT FLAGS")


def page_line(p: Page, w: Any, paddr_width: int, names: list[tuple[int, str]]) -> str:
    flags = f"{p.flags:x}"
    hits = [n for mask, n in names if p.flags & mask]
    if p.flags and hits:
        flags += " " + ",".join(hits)
    return (f"{p.address:<{w.vaddr}x}{w.minspace}{p.physical:>{paddr_width}x}{w.minspace}{p.mapping:>{w.vaddr}x}"
            f"{w.minspace}{p.index:8x} {p.count:2d} {flags}")


def _top_physical(ctx: Context) -> int:
    """The end of physical memory (max_pfn), which sets crash's PHYSICAL column width."""
    kernel = ctx.kernel
    max_pfn = kernel.lookup("max_pfn")
    return kernel.mem.ptr(max_pfn) << 12 if max_pfn is not None else 1 << 32


def page_paddr_width(ctx: Context) -> int:
    """crash's PHYSICAL column of kmem -p (and vtop's page line)."""
    return max(len(f"{_top_physical(ctx):x}"), len("PHYSICAL"))


def _pfn_of(ctx: Context, addr: int, layout: PageLayout) -> int:
    """crash's kmem -p address: a struct page, else a kernel virtual address, else physical."""
    km = ctx.kernel.km
    base = km.page_struct(0)
    if base <= addr < km.page_struct(1 << 40) and (addr - base) % layout.size == 0:
        return (addr - base) // layout.size
    if addr >= 1 << (8 * km.space.ptr_size - 1):
        try:
            return km.space.mapping(addr, 1)[0].offset >> 12
        except FaultError:
            raise CommandError(f"kmem -p: {addr:x} is not mapped") from None
    return addr >> 12


def kmem_pages(ctx: Context, words: list[Any]) -> None:
    """crash's kmem -p [addr]: struct pages (PAGE PHYSICAL MAPPING INDEX CNT FLAGS)."""
    kernel = ctx.kernel
    km = kernel.km
    layout = PageLayout.from_kernel(km, kernel.offsets)
    w = widths(kernel.mem.ptr_size)
    top = _top_physical(ctx)
    paddr_width = page_paddr_width(ctx)
    names = flag_names(km, kernel.types)
    problems: list[str] = []
    if words:
        chosen = [read_page(km, layout, _pfn_of(ctx, ctx.value(x, what="address"), layout)) for x in words]
        ctx.out.record({}, text=[page_header(w, paddr_width), *(page_line(p, w, paddr_width, names) for p in chosen)])
        return
    ctx.out.line(page_header(w, paddr_width))      # every page: streamed, a line at a time
    progress = bar_or_nothing(sys.stderr)          # a bar on a terminal; ^C ends it (finally)
    page_size = kernel.page_size()
    progress.start("kmem -p: every struct page", top)
    try:
        for p in pages(km, layout, present_sections(km), problems):
            ctx.out.line(page_line(p, w, paddr_width, names))
            progress.advance(page_size)
    finally:
        progress.finish()
    for line in problems[:5]:
        ctx.out.error(line)


# -- mdb's ::memstat --------------------------------------------------------------------------

MEMSTAT_COLUMNS = (Column("summary", "Page Summary"), Column("pages", "Pages", ">"), Column("mb", "MB", ">"),
                   Column("pct", "%Tot", ">"))


@dcmd("memstat", addr="none", synopsis="page usage summary: kernel, anon, page cache, slab, free",
      example="::memstat")
def memstat(ctx: Context) -> None:
    """illumos mdb's ::memstat for Linux, from the kernel's own counters (no page walk):
    how the RAM the kernel manages (_totalram_pages) is used. Anon and Page cache are
    the LRU's anonymous and file pages (shmem counts as page cache, as /proc/meminfo's
    Cached does), Slab the slab pages, Page tables and Kernel stacks theirs, Free the
    free pages of every zone; Kernel (other) is what is left: reserved allocations,
    vmalloc, the kernel's own page allocations."""
    kernel = ctx.kernel
    kv = kernel.vars()
    zone, node = vm_stat(kv)
    total = kernel.mem.ptr(kv.need("_totalram_pages"))

    def n(name: str) -> int:
        return node.get(name) or zone.get(name) or 0

    free = free_pages(kv)
    rows = [("Anon", n("NR_ACTIVE_ANON") + n("NR_INACTIVE_ANON")),
            ("Page cache", n("NR_FILE_PAGES")),
            ("Slab", n("NR_SLAB_RECLAIMABLE_B") + n("NR_SLAB_UNRECLAIMABLE_B")),
            ("Page tables", n("NR_PAGETABLE")),
            ("Kernel stacks", n("NR_KERNEL_STACK_KB") * 1024 // kernel.page_size())]
    used = sum(v for _, v in rows)
    rows += [("Kernel (other)", max(total - free - used, 0)), ("Free", free)]
    page = kernel.page_size()
    table = [[name, v, Dec(v * page / _MB, 1), f"{v * 100 // total if total else 0}%"] for name, v in rows]
    table.append(["Total", total, Dec(total * page / _MB, 1), ""])
    ctx.out.table(MEMSTAT_COLUMNS, table)
