"""``::kgrep`` (mdb) and ``search`` (crash): where in the kernel's memory a word is stored."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import parse_options
from pmdb.errors import CommandError, FaultError
from pmdb.os.linux.mm.search import find_word
from pmdb.output import Column, Hex
from pmdb.progress import BarProgress, NoProgress, Progress

ADDRESS_COLUMNS = (Column("address", "ADDRESS"),)


def _progress() -> Progress:
    """A bar on a terminal; nothing otherwise (a command's stderr is for its errors)."""
    return BarProgress(sys.stderr) if sys.stderr.isatty() else NoProgress()


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
    """``search [-k|-p] VALUE``: each word of the kernel's memory (by direct-map address;
    -p by physical address) that equals VALUE, as ``ADDR: VALUE`` lines."""
    positional, _ = parse_options("search", {}, args)
    if user:
        raise CommandError("search: -u (a task's user memory) is not in pmdb yet")
    if len(positional) != 1:
        raise CommandError(f"search: one value is needed (usage: search {SEARCH_USAGE})")
    value = ctx.value(str(positional[0]), what="value")
    for hit in kernel_hits(ctx, value, physical=physical):
        ctx.out.record({"address": Hex(hit), "value": Hex(value)}, text=[f"{hit:x}: {value:x} "])
