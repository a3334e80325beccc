"""The objects of one slab: which are free (on a freelist) and which are allocated.

A slab's free objects are chained through a free pointer ``offset`` bytes
into each object. Under CONFIG_SLAB_FREELIST_HARDENED (6.1 mm/slub.c
``freelist_ptr``) the stored value is ``ptr ^ s->random ^ swab(address of the
free pointer)``. A frozen slab that is some CPU's active slab has a second
chain, ``kmem_cache_cpu.freelist``, that the CPU owns. Each chain is walked
bounded by the slab's object count; a loop or a pointer that is not an
object of this slab ends that chain with one line in ``problems``.
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pmdb.errors import FaultError
from pmdb.os.linux.slab.slub import CpuSlab, KmemCache, Slab, SlubModel


def swab(value: int, size: int) -> int:
    """The kernel's swab() of an unsigned long: its bytes reversed (4 of them on i386)."""
    return int.from_bytes(value.to_bytes(size, "little"), "big")


def decode_free_pointer(cache: KmemCache, stored: int, where: int) -> int:
    """The next free object from the value stored at ``where``."""
    if cache.random is None:
        return stored
    size = cache.word_size
    return (stored ^ cache.random ^ swab(where & ((1 << 8 * size) - 1), size)) & ((1 << 8 * size) - 1)


def encode_free_pointer(cache: KmemCache, ptr: int, where: int) -> int:
    """What the kernel would store at ``where`` for ptr (the same xor, for tests and overlays)."""
    return decode_free_pointer(cache, ptr, where)


@dataclass
class SlabObjects:
    """A slab's free and allocated objects, and why a freelist was cut short."""

    slab: Slab
    cache: KmemCache
    free: set[int] = field(default_factory=set)
    rank: dict[int, int] = field(default_factory=dict)    # place on its freelist: 0 = freed last
    problems: list[str] = field(default_factory=list)
    cpu: int | None = None              # the CPU whose active slab this is

    def objects(self) -> list[int]:
        count = min(self.slab.objects, self.cache.slab_bytes // self.cache.size)
        return [self.cache.object_at(self.slab.base, i) for i in range(count)]

    def allocated(self) -> list[int]:
        return [o for o in self.objects() if o not in self.free]

    def index_of(self, addr: int) -> int | None:
        """The slot holding addr, or None when addr is past the last slot (slab padding)."""
        i = (addr - self.slab.base) // self.cache.size
        return i if 0 <= i < self.slab.objects else None


Reader = Callable[[int], int]


def slab_reader(model: SlubModel, slab: Slab, data: bytes | None) -> Reader:
    """Pointer reads inside the slab from ``data`` (the slab's bytes) when given, else the dump."""
    if data is None:
        return model.space.ptr
    base, size = slab.base, model.space.ptr_size

    def read(addr: int) -> int:
        off = addr - base
        if 0 <= off <= len(data) - size:
            return int.from_bytes(data[off:off + size], "little")
        return model.space.ptr(addr)

    return read


class PageWindow:
    """Pointer reads through the 4 KiB pages of bytes read so far (up to ``pages`` of them):
    a freelist's objects lie in the few pages of one slab (in random order where the kernel
    shuffles freelists), so most reads are a slice of bytes already read, not a trip
    through the address translation and the dump. A page that cannot be read whole leaves
    the read to the dump (the same value, or the same fault, as a direct read)."""

    def __init__(self, model: SlubModel, pages: int = 64) -> None:
        self.space = model.space
        self.size = model.space.ptr_size
        self.order: Literal["little", "big"] = model.space.byteorder
        self.limit = pages
        self.kept: dict[int, bytes] = {}
        # pages can be seen as native words holding the target's pointers
        self.words = self.size == 8 and self.order == "little" == sys.byteorder

    def page(self, base: int) -> bytes | None:
        """The page at ``base`` (4 KiB aligned), read once; None when it cannot be read whole."""
        data = self.kept.get(base)
        if data is None:
            try:
                data = self.space.read(base, 4096)
            except FaultError:
                return None
            if len(self.kept) >= self.limit:
                self.kept.clear()
            self.kept[base] = data
        return data

    def __call__(self, addr: int) -> int:
        base = addr & ~0xFFF
        off = addr - base
        data = self.page(base) if off <= 4096 - self.size else None
        if data is None:
            return self.space.ptr(addr)
        return int.from_bytes(data[off:off + self.size], self.order)


def walk_freelist(cache: KmemCache, slab: Slab, head: int, read: Reader,
                  label: str) -> tuple[list[int], str | None]:
    """The free objects chained from head, and a line saying why the chain was cut short.
    (decode_free_pointer is written out in the loop: a freelist is thousands of links. A
    loop is found by the count: the slab has ``objects`` slots, so a longer chain repeats
    one, which is then looked for; no set is kept per link. Through a PageWindow, the page
    the last link was read from is kept at hand: the next link is most often in it.)"""
    if isinstance(read, PageWindow) and read.words and _slab_words_fit(cache, slab):
        return _walk_words(cache, slab, head, read, label)
    out: list[int] = []
    add = out.append
    pad = cache.red_left_pad if cache.red_zone else 0
    limit = slab.objects
    first, size, span = slab.base + pad, cache.size, limit * cache.size
    offset, random, word = cache.offset, cache.random, cache.word_size
    mask = (1 << 8 * word) - 1
    window = read if isinstance(read, PageWindow) else None
    order: Literal["little", "big"] = window.order if window is not None else "little"
    page_base, page, room = -(1 << 65), b"", 4096 - word    # no page at hand yet
    ptr = head
    where = 0
    while ptr:
        rel = ptr - first
        if not 0 <= rel < span or rel % size:
            return out, _stray(cache, slab, label, ptr, rel, pad, where)
        add(ptr)
        if len(out) > limit:
            return _loop(out, label, slab)
        where = ptr + offset
        at = where - page_base
        if 0 <= at <= room:
            ptr = int.from_bytes(page[at:at + word], order)
        else:
            try:
                if window is not None and (where & 0xFFF) <= room and \
                        (got := window.page(where & ~0xFFF)) is not None:
                    page_base, page = where & ~0xFFF, got
                    at = where - page_base
                    ptr = int.from_bytes(page[at:at + word], order)
                else:
                    ptr = read(where)
            except FaultError as err:
                return out, _unreadable(slab, label, where, err)
        if random is not None:
            ptr = (ptr ^ random ^ int.from_bytes((where & mask).to_bytes(word, "little"), "big")) & mask
    return out, None


@functools.lru_cache(maxsize=8)
def _swab_offsets(slab_bytes: int, hardened: bool) -> array[int]:
    """swab() of each 8-byte offset into a slab of slab_bytes (zeros when not hardened): a
    free pointer's address is its slab's base plus such an offset with no bit in common (a
    slab is aligned to its size), so its swab is the two swabs xored. (Made by byteswap, not
    a Python loop: an order-3 slab has 4096 words.)"""
    table = array("Q", range(0, slab_bytes, 8) if hardened else bytes(slab_bytes // 8))
    if hardened:
        table.byteswap()
    return table


def _slab_words_fit(cache: KmemCache, slab: Slab) -> bool:
    """Whether _walk_words can walk this slab: it is aligned to its size and every free
    pointer is a whole word at a multiple of 8 from it (the kernel aligns slots and the
    free pointer to a word; a slab that is not so is walked page by page)."""
    pad = cache.red_left_pad if cache.red_zone else 0
    return not (slab.base % cache.slab_bytes or cache.size % 8 or (pad + cache.offset) % 8)


def _walk_words(cache: KmemCache, slab: Slab, head: int, window: PageWindow,
                label: str) -> tuple[list[int], str | None]:
    """walk_freelist for 64-bit little-endian pointers read on a little-endian host: each page
    of the slab is seen as words once, kept in a list by its place in the slab, and a stored
    pointer is decoded with two xors (the swab of its address is the slab base's, once a
    walk, xor a table's entry). A freelist in random order jumps between the slab's pages at
    most links: a page kept by its place costs an index there, where looking it up again
    cost a call, a view and a swab a link (the fixture's 5,120 CPU freelist links: 2.2 -> 2.0 ms)."""
    out: list[int] = []
    add = out.append
    base, slab_bytes = slab.base, cache.slab_bytes
    pad = cache.red_left_pad if cache.red_zone else 0
    limit = slab.objects
    first, size, span = base + pad, cache.size, limit * cache.size
    shift = pad + cache.offset          # from a slot's start to its object's free pointer
    random = cache.random
    key = random ^ swab(base, 8) if random is not None else 0
    table = _swab_offsets(slab_bytes, random is not None)
    views: list[memoryview | None] = [None] * (slab_bytes >> 12)
    ptr, n, at = head, 0, -1
    while ptr:
        rel = ptr - first
        if not 0 <= rel < span or rel % size:
            return out, _stray(cache, slab, label, ptr, rel, pad, base + at if at >= 0 else 0)
        add(ptr)
        n += 1
        if n > limit:
            return _loop(out, label, slab)
        at = rel + shift
        view = views[at >> 12] if at < slab_bytes else None
        if view is None:
            got = window.page(base + (at & ~0xFFF)) if at < slab_bytes else None
            if got is None:             # not in the dump, or past the slab (a bad count)
                try:
                    ptr = decode_free_pointer(cache, window.space.ptr(base + at), base + at)
                except FaultError as err:
                    return out, _unreadable(slab, label, base + at, err)
                continue
            view = views[at >> 12] = memoryview(got).cast("Q")
        ptr = view[(at & 0xFFF) >> 3] ^ key ^ table[at >> 3]
    return out, None


def _stray(cache: KmemCache, slab: Slab, label: str, ptr: int, rel: int, pad: int, where: int) -> str:
    what = "outside the slab" if not 0 <= rel + pad < cache.slab_bytes else "not an object start"
    src = f" (read at {where:#x})" if where else ""
    return f"{label} of slab {slab.page:x}: free pointer {ptr:#x}{src} is {what}"


def _unreadable(slab: Slab, label: str, where: int, err: FaultError) -> str:
    return f"{label} of slab {slab.page:x}: cannot read the free pointer at {where:#x} ({err})"


def _loop(chain: list[int], label: str, slab: Slab) -> tuple[list[int], str]:
    """A chain longer than its slab's slots: the objects before the first one met twice, and
    the line saying so."""
    seen: set[int] = set()
    for i, ptr in enumerate(chain):
        if ptr in seen:
            return chain[:i], f"{label} of slab {slab.page:x} loops: {ptr:#x} is on it twice"
        seen.add(ptr)
    raise AssertionError("a chain longer than its slab's slots repeats an object")  # pragma: no cover


def slab_objects(model: SlubModel, cache: KmemCache, slab: Slab, data: bytes | None = None,
                 cpus: list[CpuSlab] | None = None) -> SlabObjects:
    """Free and allocated objects of slab; ``cpus`` (the cache's CPU slabs) is read when not given."""
    result = SlabObjects(slab, cache)
    read = slab_reader(model, slab, data)
    free, problem = walk_freelist(cache, slab, slab.freelist, read, "freelist")
    result.free.update(free)
    result.rank.update((obj, i) for i, obj in enumerate(free))
    if problem:
        result.problems.append(problem)
    if slab.frozen:
        if cpus is None:
            try:
                cpus = model.cpu_slabs(cache)
            except FaultError:
                cpus = []
        for c in cpus:
            if c.slab == slab.page:
                result.cpu = c.cpu
                free, problem = walk_freelist(cache, slab, c.freelist, read, f"cpu {c.cpu} freelist")
                result.free.update(free)
                result.rank.update((obj, i) for i, obj in enumerate(free))
                if problem:
                    result.problems.append(problem)
    return result
