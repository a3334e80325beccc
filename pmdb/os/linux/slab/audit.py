"""Slab forensics over the SLUB model: per-cache statistics, verification, tracks and their stacks.

What the dcmds print is built here from the model (pmdb.os.linux.slab.slub), so
the same facts serve ::kmastat, ::kmem_verify, ::kmalog, ::bufctl_audit,
::whatis and the walkers. Statistics follow the kernel's own accounting (and
crash's ``kmem -s``): a node's ``total_objects`` less the free objects of the
per-CPU slabs, per-CPU partial slabs and node partial slabs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pmdb.errors import CorruptionError, FaultError, PmdbError
from pmdb.os.linux.slab.objects import PageWindow, SlabObjects, slab_objects, walk_freelist
from pmdb.os.linux.slab.slub import KmemCache, Slab, SlubModel

if TYPE_CHECKING:       # the slub_debug readers, imported by what uses them (not ::kmastat)
    from pmdb.os.linux.slab.debug import Finding, Track


@dataclass
class CacheStats:
    """One cache's objects, free objects and slabs (a row of ::kmastat / kmem -s)."""

    cache: KmemCache
    total: int = 0
    free: int = 0
    slabs: int = 0
    per_node: list[tuple[int, int, int, int]] = field(default_factory=list)  # node, slabs, partial, total
    problems: list[str] = field(default_factory=list)

    @property
    def allocated(self) -> int:
        return self.total - self.free

    @property
    def memory(self) -> int:
        return self.slabs * self.cache.slab_bytes


def cache_stats(model: SlubModel, cache: KmemCache) -> CacheStats:
    """Objects in use and in total, and slabs, of one cache; bad lists become ``problems``."""
    st = CacheStats(cache)
    read = PageWindow(model)
    try:
        for cpu in model.cpu_slabs(cache):
            if cpu.slab:
                slab = model.read_slab(cpu.slab)
                st.free += slab.objects - slab.inuse
                free, problem = walk_freelist(cache, slab, cpu.freelist, read, f"cpu {cpu.cpu} freelist")
                st.free += len(free)
                _note(st, problem)
            for slab in model.cpu_partial_chain(cpu):
                st.free += slab.objects - slab.inuse
    except (CorruptionError, FaultError) as err:
        st.problems.append(f"{cache.name}: per-CPU slabs: {why(err)}")
    for nid, node in cache.nodes:
        try:
            nr_partial, nr_slabs, total = model.node_counts(node)
            st.total += total
            st.slabs += nr_slabs
            st.per_node.append((nid, nr_slabs, nr_partial, total))
            for page in model.node_list(node, "partial"):
                st.free += model.slab_free(page)
        except (CorruptionError, FaultError) as err:
            st.problems.append(f"{cache.name}: node {nid} partial list: {why(err)}")
    return st


def why(err: PmdbError) -> str:
    """The reason alone: a corruption line names its own addresses."""
    return err.why if isinstance(err, CorruptionError) else str(err)


def _note(st: CacheStats, problem: str | None) -> None:
    if problem:
        st.problems.append(f"{st.cache.name}: {problem}")


# -- every slab and object of a cache ---------------------------------------------------

@dataclass
class SlabView:
    """One slab with its objects, and its bytes when they were read."""

    slab: Slab
    objects: SlabObjects
    data: bytes | None         # None: not read (cache_slabs without bytes_needed)


def cache_slabs(model: SlubModel, cache: KmemCache, problems: list[str], *,
                bytes_needed: bool = True) -> Iterator[SlabView]:
    """Each slab of cache with its objects and bytes; unreadable slabs add one line to problems.
    Without ``bytes_needed`` a slab's bytes are read only when it has a freelist to walk (a
    full slab has none: most of a big cache's slabs are full, and reading them all was most
    of ::kmem_verify on a dump with millions of objects); its ``data`` is then None."""
    try:
        cpus = model.cpu_slabs(cache)
    except FaultError as err:
        problems.append(f"{cache.name}: cannot read the per-CPU slabs ({err})")
        cpus = []
    for page in model.all_slab_pages(cache):
        try:
            slab = model.read_slab(page)
            data: bytes | None = None
            if bytes_needed or slab.freelist or slab.frozen:
                data = model.space.read(slab.base, cache.slab_bytes)
        except FaultError as err:
            problems.append(f"{cache.name}: slab {page:x} is not in the dump ({err})")
            continue
        if slab.objects == 0 or slab.objects * cache.size > cache.slab_bytes:
            problems.append(f"{cache.name}: slab {page:x} claims {slab.objects} objects, "
                            f"more than its {cache.slab_bytes} bytes hold")
            continue
        objs = slab_objects(model, cache, slab, data, cpus)
        problems.extend(f"{cache.name}: {p}" for p in objs.problems)
        if not slab.frozen and objs.cpu is None and not objs.problems:
            counted = slab.objects - slab.inuse
            if counted != len(objs.free):
                problems.append(f"{cache.name}: slab {page:x} counts {counted} free objects "
                                f"but {len(objs.free)} are on its freelist")
        yield SlabView(slab, objs, data)


@dataclass
class VerifyResult:
    """What ::kmem_verify found in one cache."""

    cache: KmemCache
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    slabs: int = 0
    objects: int = 0


def verify_cache(model: SlubModel, cache: KmemCache) -> VerifyResult:
    """Freelist sanity for every cache; red zones, poison and padding where slub_debug put them."""
    from pmdb.os.linux.slab import debug

    res = VerifyResult(cache)
    for view in cache_slabs(model, cache, res.problems, bytes_needed=cache.debug):
        res.slabs += 1
        res.objects += view.slab.objects
        if view.data is not None and cache.debug:
            res.findings.extend(debug.check_slab(view.objects, view.data))
    return res


# -- tracks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Transaction:
    """An alloc or free track of an object, for ::kmalog's history."""

    track: Track
    obj: int
    cache: KmemCache
    order: tuple[int, int] = (0, 0)     # ties within one jiffy; see transactions()


def transactions(model: SlubModel, caches: list[KmemCache], problems: list[str]) -> list[Transaction]:
    """Every alloc and free that the tracks of these caches record, newest first.

    Tracks stamp jiffies, so many events share a time. Within one jiffy what the dump
    itself proves goes first: an object's current state is its latest event (a free
    object's free came after its alloc), and a freelist is last-in first-out, so a free
    nearer its head is newer. Events of different objects are otherwise unordered."""
    from pmdb.os.linux.slab import debug

    out = []
    for cache in caches:
        if not cache.stores_user:
            continue
        for view in cache_slabs(model, cache, problems):
            objs = view.objects
            if view.data is None:
                continue
            for obj in objs.objects():
                is_free = obj in objs.free
                for t in debug.read_tracks(cache, obj, view.data, view.slab.base):
                    latest = (t.kind == "free") == is_free
                    rank = objs.rank.get(obj, 0) if t.kind == "free" else 0
                    out.append(Transaction(t, obj, cache, (0 if latest else 1, rank)))
    now = kernel_clock(model)[0]
    # ages, not raw jiffies, so a wrapped counter still sorts right
    out.sort(key=lambda x: ((now - x.track.when) & (1 << 64) - 1, x.order))
    return out


def kernel_clock(model: SlubModel) -> tuple[int, int]:
    """(jiffies now, HZ). HZ from ``tick_nsec`` (NSEC_PER_SEC / HZ, set by NTP code);
    250 (Debian's and many distributions' choice) when it cannot be read."""
    now, hz = 0, 250
    try:
        addr = model.lookup("jiffies")
        if addr is not None:
            now = model.space.u64(addr)
        tick = model.lookup("tick_nsec")
        if tick is not None:
            ns = model.space.u64(tick)
            if 100_000 <= ns <= 100_000_000:
                hz = round(1e9 / ns)
    except FaultError:
        pass
    return now, hz


def object_at(model: SlubModel, addr: int) -> tuple[SlabView, KmemCache, int] | None:
    """(slab view, cache, object address) for an address inside a slab's slot; None when addr
    is not slab memory or lies in the slab's tail padding."""
    hit = model.slab_of(addr)
    if hit is None:
        return None
    slab, cache = hit
    try:
        data = model.space.read(slab.base, cache.slab_bytes)
    except FaultError:
        data = b""
    objs = slab_objects(model, cache, slab, data or None)
    index = objs.index_of(addr)
    if index is None:
        return SlabView(slab, objs, data), cache, -1
    return SlabView(slab, objs, data), cache, cache.object_at(slab.base, index)


def stack_of(model: SlubModel, track: Track) -> tuple[list[int], str | None]:
    """The track's stack from the depot, or [] and why not."""
    if not track.handle:
        return [], "no stack recorded (handle 0)"
    try:
        return model.depot.stack(track.handle), None
    except PmdbError as err:
        return [], why(err)


def requested_size(view: SlabView, cache: KmemCache, obj: int) -> int | None:
    from pmdb.os.linux.slab import debug

    return debug.orig_size(cache, obj, view.data, view.slab.base) if view.data else None
