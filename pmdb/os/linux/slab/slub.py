"""The SLUB allocator as the dump left it: caches, their slabs, and which slab holds an address.

Everything is read from the dump and laid out by the kernel's own BTF (no
offsets are constants, except the ``SLAB_*`` flag bits, which are macros and so
absent from BTF). Per-cache facts are read once into :class:`KmemCache`; the
slabs are decoded from their ``struct slab`` (6.1; before 5.17 the same fields
live in ``struct page``, and the layout code falls back to it).

Helpers here trust nothing: list walks are bounded and detect loops, and what
cannot be read becomes a :class:`CorruptionError` with one clear line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pmdb.errors import CorruptionError, FaultError, PmdbError
from pmdb.os.linux.mm.kernel_memory import kernel_parts
from pmdb.os.linux.slab.layout import SlubLayout, TrackLayout

# include/linux/slab.h (6.1): macros, so not in BTF
SLAB_CONSISTENCY_CHECKS = 0x100
SLAB_RED_ZONE = 0x400
SLAB_POISON = 0x800
SLAB_KMALLOC = 0x1000
SLAB_STORE_USER = 0x10000
SLAB_TYPESAFE_BY_RCU = 0x80000
OBJECT_POISON = 0x80000000      # mm/slub.c __OBJECT_POISON: poison the object itself
FLAG_NAMES = ((SLAB_CONSISTENCY_CHECKS, "CONSISTENCY_CHECKS"), (SLAB_RED_ZONE, "RED_ZONE"),
              (SLAB_POISON, "POISON"), (SLAB_KMALLOC, "KMALLOC"), (SLAB_STORE_USER, "STORE_USER"),
              (SLAB_TYPESAFE_BY_RCU, "TYPESAFE_BY_RCU"), (OBJECT_POISON, "OBJECT_POISON"))

MAX_CACHES = 10_000         # far above any real kernel; ends a walk through garbage
MAX_LIST = 1_000_000        # slabs on one list


@dataclass
class KmemCache:
    """One ``struct kmem_cache``: its geometry and where its slabs are kept."""

    address: int
    name: str
    flags: int
    size: int               # the stride between slots
    object_size: int
    offset: int             # of the free pointer from the object
    inuse: int
    align: int
    red_left_pad: int
    random: int | None      # CONFIG_SLAB_FREELIST_HARDENED's key; None without it
    order: int
    objects_per_slab: int
    cpu_slab: int           # per-CPU offset of its kmem_cache_cpu
    nodes: list[tuple[int, int]] = field(default_factory=list)   # (node id, kmem_cache_node)
    track: TrackLayout = field(default_factory=TrackLayout)
    word_size: int = 8      # of a free pointer: the kernel's pointer size

    @property
    def slab_bytes(self) -> int:
        return 4096 << self.order

    @property
    def red_zone(self) -> bool:
        return bool(self.flags & SLAB_RED_ZONE)

    @property
    def stores_user(self) -> bool:
        return bool(self.flags & SLAB_STORE_USER)

    @property
    def debug(self) -> bool:
        return bool(self.flags & (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_CONSISTENCY_CHECKS))

    @property
    def info_end(self) -> int:
        """Where the debug metadata starts, from the object: past the free pointer when
        that lives outside the object (mm/slub.c get_info_end)."""
        return self.inuse + 8 if self.offset >= self.inuse else self.inuse

    def flag_names(self) -> str:
        return "|".join(n for bit, n in FLAG_NAMES if self.flags & bit) or "none"

    def slot_start(self, base: int, index: int) -> int:
        return base + index * self.size

    def object_at(self, base: int, index: int) -> int:
        """The address kmalloc returns for slot ``index``: past the left red zone."""
        return base + index * self.size + (self.red_left_pad if self.red_zone else 0)


@dataclass
class Slab:
    """One slab: its ``struct slab`` (the head page) and the memory it carves up."""

    page: int
    cache: int
    base: int               # the first slot
    freelist: int           # slab->freelist (objects the slab itself holds free)
    inuse: int
    objects: int
    frozen: bool
    node: int = 0
    next: int = 0           # the next slab of a per-CPU partial list (slab->next)

    def contains(self, addr: int, cache: KmemCache) -> bool:
        return self.base <= addr < self.base + cache.slab_bytes


@dataclass
class CpuSlab:
    """One CPU's kmem_cache_cpu of a cache: its slab, freelist and partial list."""

    cpu: int
    address: int            # this CPU's kmem_cache_cpu
    freelist: int
    slab: int               # its struct slab, 0 when none
    partial: int            # first slab of its per-CPU partial list


class SlubModel:
    """Slab caches and slabs of one kernel dump; see the module docstring."""

    def __init__(self, space: Any, layout: Any, info: Any, lookup: Any, types: Any) -> None:
        self.space = space
        self.layout = layout
        self.lookup = lookup
        self.types = types
        self.lay = SlubLayout.from_types(types, info, space.byteorder)
        self._depot: Any = None
        self._caches: list[KmemCache] | None = None
        self.cache_errors: list[str] = []
        self._by_addr: dict[int, KmemCache] = {}
        self._scan: Any = None                  # scan.SlabScan, once all_slab_pages ran
        self._max_pfn: int | None = None
        self._nr_node_ids: int | None = None

    @property
    def depot(self) -> Any:
        """The stack depot, for track handles (read lazily)."""
        if self._depot is None:
            from pmdb.os.linux.slab.stackdepot import StackDepot
            self._depot = StackDepot(self.space, self.lookup, self.types)
        return self._depot

    # -- caches -----------------------------------------------------------------------

    def caches(self) -> list[KmemCache]:
        """Every cache on ``slab_caches``, in list order; a loop or a bad entry ends the walk
        and leaves one line in ``cache_errors``."""
        if self._caches is None:
            self._caches = self._read_caches()
            self._by_addr = {c.address: c for c in self._caches}
        return self._caches

    def _read_caches(self) -> list[KmemCache]:
        head = self.lookup("slab_caches")
        if head is None:
            raise PmdbError("no slab_caches symbol: this kernel's slab caches cannot be found")
        out: list[KmemCache] = []
        try:
            for node in walk_list_head(self.space, head, MAX_CACHES):
                out.append(self.read_cache(node - self.lay.cache_list))
        except CorruptionError as err:
            self.cache_errors.append(f"slab_caches: {err.why}")
        except FaultError as err:
            self.cache_errors.append(f"slab_caches: cannot read a cache ({err})")
        return out

    def _word(self, raw: bytes, off: int) -> int:
        return _word(raw, off, self.space.ptr_size)

    def read_cache(self, addr: int) -> KmemCache:
        lay = self.lay
        stride = lay.node_stride
        nodes_at = lay.cache_node
        raw = self.space.read(addr, max(lay.cache_fields.size, nodes_at + stride * self.nr_node_ids()))
        f = lay.cache_fields.unpack(raw)
        name = self.space.cstring(f["name"], 64).decode("utf-8", "replace")
        oo = f["oo"]
        cache = KmemCache(
            address=addr, name=name, flags=f["flags"] & 0xFFFFFFFF, size=f["size"], object_size=f["object_size"],
            offset=f["offset"], inuse=f["inuse"], align=f["align"], red_left_pad=f["red_left_pad"],
            random=f.get("random"), order=oo >> 16, objects_per_slab=oo & 0xFFFF,
            cpu_slab=f.get("cpu_slab", 0),
            track=lay.track, word_size=self.space.ptr_size)
        if not 0 < cache.size <= 1 << 24 or cache.order > 10:
            raise CorruptionError(addr, f"cache {name!r} has an impossible size {cache.size} "
                                        f"or order {cache.order}")
        for nid in range(self.nr_node_ids()):
            ptr = self._word(raw, nodes_at + nid * stride)
            if ptr:
                cache.nodes.append((nid, ptr))
        return cache

    def cache_at(self, addr: int) -> KmemCache | None:
        """The cache whose struct kmem_cache is at addr (a listed one, or read on demand)."""
        self.caches()
        hit = self._by_addr.get(addr)
        if hit is None:
            try:
                hit = self.read_cache(addr)
            except PmdbError:
                return None
            self._by_addr[addr] = hit
        return hit

    def find_cache(self, word: str | int) -> KmemCache | None:
        """A cache by name or by the address of its struct kmem_cache."""
        if isinstance(word, int):
            return self.cache_at(word)
        for c in self.caches():
            if c.name == word:
                return c
        return None

    # -- slabs ------------------------------------------------------------------------

    def read_slab(self, page: int, node: int = 0) -> Slab:
        lay = self.lay
        kept = self._scan.heads.get(page) if self._scan is not None else None
        fields = lay.slab_fields
        raw = kept if kept is not None and len(kept) >= fields.size else self.space.read(page, fields.size)
        f = fields.unpack(raw)
        counters = f["counters"]
        pfn = (page - self.layout.vmemmap_base) // lay.page_size
        return Slab(page=page, cache=f["slab_cache"], base=self.layout.page_offset_base + pfn * 4096,
                    freelist=f["freelist"], inuse=lay.inuse_of(counters), objects=lay.objects_of(counters),
                    frozen=lay.frozen_of(counters), node=node, next=f.get("next", 0))

    def slab_free(self, page: int) -> int:
        """A slab's free objects as its counters say (objects - inuse): all a node's partial
        slab adds to a cache's sums, read as one word, not a whole Slab (a busy machine's
        caches have hundreds of partial slabs)."""
        lay = self.lay
        counters = self.space.ptr(page + lay.slab_counters)     # an unsigned long: a word
        return lay.objects_of(counters) - lay.inuse_of(counters)

    def page_of(self, addr: int) -> int | None:
        """The struct page of a direct-map address; None outside the direct map."""
        phys = addr - self.layout.page_offset_base
        if not 0 <= phys < self.lookup_max_pfn() * 4096:
            return None
        return self.layout.vmemmap_base + (phys >> 12) * self.lay.page_size

    def nr_node_ids(self) -> int:
        """How many node pointers a kmem_cache holds that may be set (read once)."""
        if self._nr_node_ids is None:
            self._nr_node_ids = self.lay.nr_node_ids(self)
        return self._nr_node_ids

    def lookup_max_pfn(self) -> int:
        """One past the highest page frame (``max_pfn``); 2**34 frames when unreadable."""
        if self._max_pfn is None:
            addr = self.lookup("max_pfn")
            try:
                self._max_pfn = self.space.ptr(addr) if addr is not None else 1 << 34
            except FaultError:
                self._max_pfn = 1 << 34
        return self._max_pfn

    def slab_of(self, addr: int) -> tuple[Slab, KmemCache] | None:
        """The slab (and its cache) whose memory holds addr; None when addr is not slab memory."""
        page = self.page_of(addr)
        if page is None:
            return None
        try:
            head = self._head_page(page)
            flags = self.space.ptr(head)
            if not flags >> self.lay.pg_slab & 1:
                return None
            slab = self.read_slab(head)
        except FaultError:
            return None
        cache = self.cache_at(slab.cache)
        if cache is None or not slab.contains(addr, cache):
            return None
        return slab, cache

    def _head_page(self, page: int) -> int:
        ch = self.space.ptr(page + self.lay.page_compound_head)
        return ch - 1 if ch & 1 else page

    def cpu_slabs(self, cache: KmemCache) -> list[CpuSlab]:
        """Each CPU's kmem_cache_cpu of cache (its slab, lockless freelist and partial list)."""
        out: list[CpuSlab] = []
        fields = self.lay.cpu_fields
        if fields is None or self.lay.cache_cpu_slab is None:   # no per-CPU slabs here (sheaves)
            return out
        for cpu in range(self.layout.nr_cpu_ids):
            addr = self.layout.per_cpu_address(cache.cpu_slab, cpu)
            f = fields.unpack(self.space.read(addr, fields.size))
            out.append(CpuSlab(cpu, addr, f["freelist"], f["slab"], f.get("partial", 0)))
        return out

    def cpu_partial_chain(self, cpu: CpuSlab) -> Iterator[Slab]:
        """The slabs of the per-CPU partial list, a chain through slab->next, each read once."""
        page, seen = cpu.partial, set[int]()
        while page and self.lay.slab_next is not None:
            if page in seen or len(seen) > MAX_LIST:
                raise CorruptionError(page, f"cpu {cpu.cpu}'s partial slab list loops")
            seen.add(page)
            slab = self.read_slab(page)
            yield slab
            page = slab.next

    def cpu_partial_slabs(self, cpu: CpuSlab) -> Iterator[int]:
        """The struct slabs of the per-CPU partial list."""
        return (slab.page for slab in self.cpu_partial_chain(cpu))

    def node_list(self, node: int, which: str) -> Iterator[int]:
        """The struct slabs on a kmem_cache_node's ``partial`` or ``full`` list."""
        off = self.lay.node_partial if which == "partial" else self.lay.node_full
        if off is None:
            return
        for entry in walk_list_head(self.space, node + off, MAX_LIST):
            yield entry - self.lay.slab_list

    def node_counts(self, node: int) -> tuple[int, int, int]:
        """(nr_partial, nr_slabs, total_objects) of a kmem_cache_node."""
        lay = self.lay
        raw = self.space.read(node, lay.node_read_size)
        return (self._word(raw, lay.node_nr_partial),
                self._word(raw, lay.node_nr_slabs) if lay.node_nr_slabs is not None else 0,
                self._word(raw, lay.node_total_objects) if lay.node_total_objects is not None else 0)

    def all_slab_pages(self, cache: KmemCache) -> list[int]:
        """Every slab of cache, found by a scan of the page array (full slabs of a cache
        without SLAB_STORE_USER are on no list); the scan runs once per model."""
        if self._scan is None:
            from pmdb.os.linux.slab.scan import scan_slab_pages
            from pmdb.progress import bar_or_nothing
            self._scan = scan_slab_pages(self.space, self.layout.vmemmap_base, self.lookup_max_pfn(),
                                         self.lay, bar_or_nothing(counts=True))
        found: list[int] = self._scan.by_cache.get(cache.address, [])
        return found


def find_listed_cache(model: SlubModel, word: Any) -> KmemCache | None:
    """A cache on slab_caches by name, by address, or by an address spelled in hex."""
    caches = model.caches()
    for c in caches:
        if c.name == word:
            return c
    if isinstance(word, str):
        try:
            word = int(word.removeprefix("0x"), 16)
        except ValueError:
            return None
    return next((c for c in caches if c.address == word), None)


def walk_list_head(space: Any, head: int, limit: int) -> Iterator[int]:
    """The entries of a circular ``list_head`` (not the head); bounded, loops detected."""
    seen = {head}
    try:
        entry = space.ptr(head)
    except FaultError as err:
        raise CorruptionError(head, f"cannot read the list head ({err})") from None
    while entry != head:
        if entry in seen:
            raise CorruptionError(entry, f"the list at {head:#x} loops back to {entry:#x}, not to its head")
        if len(seen) > limit:
            raise CorruptionError(entry, f"the list at {head:#x} has more than {limit} entries")
        seen.add(entry)
        yield entry
        try:
            entry = space.ptr(entry)
        except FaultError as err:
            raise CorruptionError(entry, f"cannot read the next pointer ({err})") from None


def _word(raw: bytes, off: int, size: int) -> int:
    """An unsigned long or pointer of the kernel (4 bytes on i386, 8 on 64-bit CPUs)."""
    return int.from_bytes(raw[off:off + size], "little")


def slub_model(target: Any) -> SlubModel:
    """The target's SLUB model, built once and kept on the target."""
    model = getattr(target, "_slub_model", None)
    if model is not None:
        return model
    parts = kernel_parts(target)
    if parts is None:
        raise PmdbError("slab commands need a Linux kernel dump")
    model = SlubModel(parts.space, parts.layout, parts.info, parts.lookup, target.types)
    target._slub_model = model
    return model
