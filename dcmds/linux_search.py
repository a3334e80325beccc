"""``::kgrep`` (mdb) and ``search`` (crash): where in the kernel's memory a word is stored."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError, FaultError
from pmdb.os.linux.mm.search import find_word, find_word_mapped
from pmdb.output import Column, Hex
from pmdb.progress import Progress, bar_or_nothing

ADDRESS_COLUMNS = (Column("address", "ADDRESS"),)


def _progress() -> Progress:
    """A bar on a terminal; nothing otherwise (a command's stderr is for its errors)."""
    return bar_or_nothing(sys.stderr)


def kernel_hits(ctx: Context, value: int, physical: bool = False) -> Iterator[int]:
    """Direct-map addresses (physical ones with ``physical``) of every aligned word equal
    to value, over all of the dump's RAM. A hit the direct map does not cover (32-bit high
    memory) is given by its physical address only when ``physical``."""
    kernel = ctx.kernel
    ranges = getattr(kernel.dump, "ranges", None)
    if ranges is None:
        raise CommandError("this dump cannot list its physical memory ranges")
    space = kernel.km.space
    phys = getattr(space, "phys", None)
    if phys is None:
        raise CommandError("this kernel's memory has no physical space below it")
    size = ctx.target.arch.ptr_size
    base = kernel.km.layout.page_offset_base
    for at in find_word(phys, ranges(), value, size, ctx.target.arch.byteorder, _progress()):
        if physical:
            yield at
            continue
        vaddr = (base + at) & ((1 << 8 * size) - 1)
        try:
            if space.read_int(vaddr, size) & ((1 << 8 * size) - 1) == value & ((1 << 8 * size) - 1):
                yield vaddr
        except FaultError:
            continue


def mapped_hits(ctx: Context, value: int) -> Iterator[int]:
    """Every aligned word equal to value in the kernel half of the address space, through
    the page tables (each alias of a page too), in address order; the direct map only
    where the CPU's space cannot list its mappings (arm64)."""
    space = ctx.kernel.km.space
    mappings = getattr(space, "mappings", None)
    if mappings is None:
        yield from kernel_hits(ctx, value)
        return
    size = ctx.target.arch.ptr_size
    kernel_half = 1 << (8 * size - 1) if size == 8 else 0
    regions = list(mappings(kernel_half, 1 << 8 * size))
    image = _image_by_rule(ctx)
    if image:     # the kernel image as its linear rule maps it, in place of its page tables
        lo, hi = image[0][0], image[-1][0] + image[-1][2]
        regions = sorted(list(_outside(regions, lo, hi)) + image)
    phys = space.phys              # type: ignore[attr-defined]  # a paged space has one
    held = getattr(ctx.kernel.dump, "ranges", None)
    yield from find_word_mapped(phys, regions, value, size, ctx.target.arch.byteorder, _progress(),
                                sorted(held()) if held is not None else None)


def _outside(regions: list[tuple[int, int, int]], lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
    """The parts of (virtual, physical, size) regions outside virtual [lo, hi) (a region
    of the page tables may run across either end)."""
    for vaddr, paddr, size in regions:
        if vaddr < lo:
            yield vaddr, paddr, min(size, lo - vaddr)
        if vaddr + size > hi:
            start = max(vaddr, hi)
            yield start, paddr + start - vaddr, vaddr + size - start


def _image_by_rule(ctx: Context) -> list[tuple[int, int, int]]:
    """x86-64: [__START_KERNEL_map, _end) by the image rule (virtual - start + phys_base),
    page by page, as crash's search reads it: the kernel frees the page tables below _text,
    yet the rule still names the RAM there."""
    space = ctx.kernel.km.space
    rule = getattr(space, "image_phys", None)
    end = ctx.target.symbols.lookup("_end")
    start = ctx.kernel.km.layout.image_start
    if rule is None or end is None or not start < end.addr:
        return []
    out = []
    for vaddr in range(start, end.addr, 1 << 21):
        phys = rule(vaddr)
        if phys is not None and phys >= 0:
            out.append((vaddr, phys, min(1 << 21, end.addr - vaddr)))
    return out


@dcmd("kgrep", addr="required", synopsis="find the kernel memory words that hold a value",
      example="ffff8be102a71840::kgrep")
def kgrep(ctx: Context) -> None:
    """Every pointer-aligned word of the dump's RAM equal to addr, by its direct-map address
    (mdb's ::kgrep). Piped, the addresses go on. Pages the dump left out are not searched."""
    value = ctx.require_addr()
    for hit in kernel_hits(ctx, value):
        if ctx.piped:
            ctx.emit(hit)
        else:
            ctx.out.table(ADDRESS_COLUMNS, [[Hex(hit)]], header=False)


SEARCH_USAGE = "[-k|-p] value"


@dcmd("search", addr="none", synopsis="crash's search: where kernel memory holds a value",
      example="search -k ffff8be102a71840", usage=SEARCH_USAGE,
      opts={"k": "kernel", "p": "physical", "u": "user"})
def search(ctx: Context, *args: Any, kernel: bool = False, physical: bool = False, user: bool = False) -> None:
    """``search [-k|-p] VALUE``: each word of the kernel's memory that equals VALUE, as
    ``ADDR: VALUE`` lines: -k (the default) every kernel mapping of it, in address order
    (the direct map, vmalloc, the kernel image's alias, modules), -p by physical address."""
    positional, _ = parse_options("search", {}, args)
    if user:
        raise CommandError("search: -u (a task's user memory) is not in pmdb yet")
    if len(positional) != 1:
        raise CommandError(f"search: one value is needed (usage: search {SEARCH_USAGE})")
    value = ctx.value(str(positional[0]), what="value")
    hits = kernel_hits(ctx, value, physical=True) if physical else mapped_hits(ctx, value)
    for hit in hits:
        ctx.out.record({"address": Hex(hit), "value": Hex(value)}, text=[f"{hit:x}: {value:x} "])
