"""Where SLUB's fields are, from the kernel's BTF: kmem_cache, kmem_cache_cpu/node, struct slab.

Offsets are looked up once per dump, so reading a cache or a slab is one read
and a few slices. Version differences are explicit: ``struct slab`` split off
``struct page`` in 5.17 (before, the same member names are in ``struct
page``), and ``kmem_cache_cpu.page`` became ``.slab`` at the same time. Later
kernels (Debian's 7.2 has it, 6.12 not) keep no per-CPU slabs at all (no ``struct
kmem_cache_cpu``: freed objects wait in per-CPU "sheaves", which /proc/slabinfo counts
as in use, as pmdb does) and hold each node's ``kmem_cache_node`` in
``per_node[].node`` instead of ``node[]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmdb.errors import FormatError, PmdbError
from pmdb.types.fields import FieldGroup, member_field
from pmdb.types.model import Type
from pmdb.types.value import path_offset


def _type(types: Any, *spellings: str) -> Type:
    for s in spellings:
        t = types.find(s)
        if t is not None and t.strip().members:
            return t
    raise FormatError(f"the kernel's types have no {' or '.join(spellings)}: SLUB cannot be read")


def _off(t: Type, *paths: str) -> int:
    """Byte offset of the first member path t has."""
    for p in paths:
        try:
            return path_offset(t, p)[0] // 8
        except PmdbError:
            continue
    raise FormatError(f"{t} has no member {' or '.join(paths)} in this kernel's BTF")


def _optional_type(types: Any, spelling: str) -> Type | None:
    t = types.find(spelling)
    return t if t is not None and t.strip().members else None


def _node_array(types: Any, kc: Type) -> tuple[int, int, int]:
    """(offset, stride, length) of a kmem_cache's per-node kmem_cache_node pointers: newest
    layout first (``per_node[].node``, the barn beside it), then ``node[]``."""
    if _maybe(kc, "per_node") is not None:
        ptrs = _type(types, "struct kmem_cache_per_node_ptrs")
        arr = path_offset(kc, "per_node")[1].strip()
        return _off(kc, "per_node") + _off(ptrs, "node"), ptrs.sizeof(), arr.count or 1
    arr = path_offset(kc, "node")[1].strip()
    return _off(kc, "node"), 8, arr.count or 1


def _maybe(t: Type, *paths: str) -> int | None:
    try:
        return _off(t, *paths)
    except FormatError:
        return None


def _fields(t: Type, byteorder: str, *names: str) -> FieldGroup:
    """The members ``names`` of t read in one unpack, each under its first spelling:
    ``a|b`` is a or else b, ``?a`` is a when t has it."""
    found: dict[str, tuple[int, int]] = {}
    for spelling in names:
        optional = spelling.startswith("?")
        choices = spelling.lstrip("?").split("|")
        for path in choices:
            try:
                found[choices[0]] = member_field(t, path)
                break
            except PmdbError:
                continue
        else:
            if not optional:
                raise FormatError(f"{t} has no member {' or '.join(choices)} in this kernel's BTF")
    return FieldGroup(found, byteorder)


def _bits(t: Type, name: str, base: int) -> tuple[int, int]:
    """(shift, width) of a bitfield relative to the byte offset base."""
    bit_off, _, size = path_offset(t, name)
    return bit_off - base * 8, size


@dataclass(frozen=True)
class TrackLayout:
    """``struct track`` (mm/slub.c): its size and where addr, handle, cpu, pid, when are.
    The 6.1 layout with CONFIG_STACKDEPOT is the default; before 5.17 a track held the
    stack itself (``addrs[TRACK_ADDRS_COUNT]``) and has no handle."""

    size: int = 32
    addr: int = 0
    handle: int | None = 8
    cpu: int = 12
    pid: int = 16
    when: int = 24

    @classmethod
    def from_types(cls, types: Any) -> TrackLayout:
        t = types.find("struct track")
        if t is None or not t.strip().members:
            return cls()
        try:
            return cls(t.sizeof(), _off(t, "addr"), _maybe(t, "handle"), _off(t, "cpu"), _off(t, "pid"),
                       _off(t, "when"))
        except FormatError:
            return cls()


@dataclass
class SlubLayout:
    """Offsets of the SLUB structures' fields in this kernel, from its BTF."""

    cache_cpu_slab: int | None     # None: no per-CPU slabs (sheaves instead)
    cache_list: int
    cache_node: int
    node_stride: int               # bytes between the node pointers of a kmem_cache
    node_nr_partial: int
    node_partial: int
    node_nr_slabs: int | None
    node_total_objects: int | None
    node_full: int | None
    node_read_size: int
    slab_list: int
    slab_next: int | None          # the per-CPU partial list's link; gone with per-CPU slabs
    slab_cache: int
    slab_counters: int
    inuse_bits: tuple[int, int]
    objects_bits: tuple[int, int]
    frozen_bits: tuple[int, int]
    page_compound_head: int
    page_size: int
    pg_slab: int
    max_nodes: int
    track: TrackLayout
    cache_fields: FieldGroup       # what read_cache takes from a kmem_cache, in one unpack
    cpu_fields: FieldGroup | None  # and cpu_slabs from a kmem_cache_cpu
    slab_fields: FieldGroup        # and read_slab from a struct slab (its size: what a read covers)

    @classmethod
    def from_types(cls, types: Any, info: Any, byteorder: str = "little") -> SlubLayout:
        kc = _type(types, "struct kmem_cache")
        cpu = _optional_type(types, "struct kmem_cache_cpu")
        node = _type(types, "struct kmem_cache_node")
        slab = _type(types, "struct slab", "struct page")   # 5.17 split struct slab off struct page
        page = _type(types, "struct page")
        counters = _off(slab, "counters")
        slab_fields = _fields(slab, byteorder, "slab_cache", "freelist", "counters", "?next")
        cache_node, node_stride, max_nodes = _node_array(types, kc)
        return cls(
            cache_cpu_slab=_maybe(kc, "cpu_slab") if cpu is not None else None,
            cache_list=_off(kc, "list"), cache_node=cache_node, node_stride=node_stride,
            node_nr_partial=_off(node, "nr_partial"), node_partial=_off(node, "partial"),
            node_nr_slabs=_maybe(node, "nr_slabs"), node_total_objects=_maybe(node, "total_objects"),
            node_full=_maybe(node, "full"), node_read_size=node.sizeof(),
            slab_list=_off(slab, "slab_list", "lru"), slab_next=_maybe(slab, "next"),
            slab_cache=_off(slab, "slab_cache"), slab_counters=counters,
            inuse_bits=_bits(slab, "inuse", counters), objects_bits=_bits(slab, "objects", counters),
            frozen_bits=_bits(slab, "frozen", counters),
            page_compound_head=_off(page, "compound_head", "compound_info"),   # renamed by 7.2
            page_size=info.sizes.get("page", 0) or page.sizeof(),
            pg_slab=info.number_or("PG_slab", 9),
            max_nodes=max_nodes, track=TrackLayout.from_types(types),
            cache_fields=_fields(kc, byteorder, "flags", "size", "object_size", "offset", "inuse", "align",
                                 "red_left_pad", "name", "oo", "?random", *(("?cpu_slab",) if cpu else ())),
            cpu_fields=_fields(cpu, byteorder, "freelist", "slab|page", "?partial") if cpu is not None else None,
            slab_fields=slab_fields)

    def _field(self, counters: int, bits: tuple[int, int]) -> int:
        return counters >> bits[0] & (1 << bits[1]) - 1

    def inuse_of(self, counters: int) -> int:
        return self._field(counters, self.inuse_bits)

    def objects_of(self, counters: int) -> int:
        return self._field(counters, self.objects_bits)

    def frozen_of(self, counters: int) -> bool:
        return bool(self._field(counters, self.frozen_bits))

    def nr_node_ids(self, model: Any) -> int:
        """How many node pointers a kmem_cache holds that may be set (nr_node_ids)."""
        addr = model.lookup("nr_node_ids")
        try:
            n = model.space.u32(addr) if addr is not None else 1
        except PmdbError:
            n = 1
        return n if 0 < n <= self.max_nodes else 1
