"""Memory usage as the kernel counts it: vm_stat counters and crash's ``kmem -i`` summary.

The counters are the kernel's own (``vm_zone_stat``, ``vm_node_stat`` and the per-CPU
``vm_event_states``), named by the enums in its types, as crash's ``kmem -V`` reads them.
``kmem -i`` follows crash 8.0.6's dump_kmeminfo line by line: total RAM from
``_totalram_pages``, free pages summed over every zone, buffers as nr_blockdev_pages(),
cached as NR_FILE_PAGES less swap cache and buffers, slab from the NR_SLAB_*_B node
counters, hugetlb from ``hstates``, swap from ``swap_info``, and the commit limit as the
kernel computes it. SHARED is crash's own count (non-reserved struct pages whose
refcount is above 1, over every page of memory): the kernel keeps no such counter, so
this is the one line that walks the mem_map (pmdb.os.linux.mm.pages).
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.errors import PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.mm.kernel_memory import KernelMemory
from pmdb.os.linux.mm.pages import PageLayout, flag_bit, pages, present_sections
from pmdb.os.linux.sysinfo import KernelVars, pgdats
from pmdb.types.lists import ListLink, walk_list
from pmdb.types.registry import TypeRegistry
from pmdb.types.value import Object

SWP_USED = 1
MAX_SWAPFILES = 64          # a bound on nr_swapfiles (the kernel's MAX_SWAPFILES is at most 32)


@dataclass(frozen=True)
class Counters:
    """One counter table: (name, value) in the enum's order."""

    title: str
    items: list[tuple[str, int]]

    def get(self, name: str) -> int | None:
        return dict(self.items).get(name)


def _enum_names(kv: KernelVars, enum: str, end: str) -> list[str]:
    """An enum's names in value order up to its ``NR_..._ITEMS`` count."""
    t = kv.types.find(f"enum {enum}")
    if t is None:
        raise SymbolError(f"the kernel's types have no enum {enum}")
    values = dict(t.strip().enumerators)
    count = values.get(end, len(values))
    names = {v: n for n, v in t.strip().enumerators if 0 <= v < count and n != end}
    return [names.get(i, f"[{i}]") for i in range(count)]


def _longs(kv: KernelVars, addr: int, n: int, signed: bool = True) -> list[int]:
    w = kv.mem.ptr_size
    raw = kv.mem.read(addr, w * n)
    return [int.from_bytes(raw[w * i:w * i + w], kv.mem.byteorder, signed=signed) for i in range(n)]


def vm_stat(kv: KernelVars) -> list[Counters]:
    """VM_ZONE_STAT and VM_NODE_STAT (4.8+: the counters split into zone and node tables)."""
    out = []
    for title, symbol, enum, end in (("VM_ZONE_STAT", "vm_zone_stat", "zone_stat_item", "NR_VM_ZONE_STAT_ITEMS"),
                                     ("VM_NODE_STAT", "vm_node_stat", "node_stat_item", "NR_VM_NODE_STAT_ITEMS")):
        names = _enum_names(kv, enum, end)
        out.append(Counters(title, list(zip(names, _longs(kv, kv.need(symbol), len(names)), strict=True))))
    return out


def vm_events(kv: KernelVars, per_cpu: list[int]) -> Counters:
    """VM_EVENT_STATES: the per-CPU vm_event_states summed over the CPUs whose per-CPU
    offsets are given (CONFIG_VM_EVENT_COUNTERS)."""
    names = _enum_names(kv, "vm_event_item", "NR_VM_EVENT_ITEMS")
    var = kv.need("vm_event_states")
    mask = (1 << 8 * kv.mem.ptr_size) - 1
    totals = [0] * len(names)
    for offset in per_cpu:
        for i, v in enumerate(_longs(kv, (var + offset) & mask, len(names), signed=False)):
            totals[i] = (totals[i] + v) & mask
    return Counters("VM_EVENT_STATES", list(zip(names, totals, strict=True)))


@dataclass(frozen=True)
class MemSummary:
    """crash's kmem -i, in pages (shared is None when the mem_map could not be walked)."""

    total: int
    free: int
    shared: int | None
    buffers: int
    cached: int
    slab: int
    huge_total: int
    huge_free: int
    swap_total: int
    swap_used: int
    commit_limit: int | None
    committed: int | None


def free_pages(kv: KernelVars) -> int:
    """NR_FREE_PAGES summed over every zone of every node (crash's zone free_pages)."""
    zone = kv.types.lookup("struct zone").sizeof()
    nzones = kv.types.lookup("struct pglist_data").find_member("node_zones")
    free_at = kv.offsets.offsetof("zone", "vm_stat") + kv.mem.ptr_size * dict(
        kv.types.lookup("enum zone_stat_item").strip().enumerators)["NR_FREE_PAGES"]
    count = nzones[0].type.strip().count or 0 if nzones else 0
    zones = kv.offsets.offsetof("pglist_data", "node_zones")
    return sum(kv.mem.ptr(pgdat + zones + i * zone + free_at) for pgdat in pgdats(kv) for i in range(count))


def blockdev_pages(kv: KernelVars) -> int:
    """nr_blockdev_pages(): page cache of the block devices' inodes (5.x-6.x: every inode
    on blockdev_superblock's s_inodes list)."""
    sb = kv.mem.ptr(kv.need("blockdev_superblock"))
    if not sb:
        return 0
    head = sb + kv.offsets.offsetof("super_block", "s_inodes")
    link = kv.offsets.offsetof("inode", "i_sb_list")
    mapping, nrpages = kv.offsets.offsetof("inode", "i_mapping"), kv.offsets.offsetof("address_space", "nrpages")
    total = 0
    for inode in walk_list(kv.mem, head, ListLink(link, link), head=head):
        total += kv.mem.ptr(kv.mem.ptr(inode + mapping) + nrpages)
    return total


def hugetlb_pages(kv: KernelVars) -> tuple[int, int]:
    """(total, free) hugetlb pages in base pages, over the hstates in use."""
    hstates, used = kv.lookup("hstates"), kv.lookup("hugetlb_max_hstate")
    if hstates is None or used is None:
        return 0, 0
    size = kv.types.lookup("struct hstate").sizeof()
    order, nr, free = (kv.offsets.offsetof("hstate", m) for m in ("order", "nr_huge_pages", "free_huge_pages"))
    total = avail = 0
    for i in range(min(kv.mem.u32(used), 16)):
        h = hstates + i * size
        o = kv.mem.u32(h + order)
        if o:
            total += kv.mem.ptr(h + nr) << o
            avail += kv.mem.ptr(h + free) << o
    return total, avail


def swap_infos(kv: KernelVars) -> list[int] | None:
    """The ``struct swap_info_struct`` of each swap device in use (``swap_info[nr_swapfiles]``
    with SWP_USED in its flags); None when the kernel has no swap_info or nr_swapfiles."""
    nr, table = kv.lookup("nr_swapfiles"), kv.lookup("swap_info")
    if nr is None or table is None:
        return None
    flags = kv.offsets.offsetof("swap_info_struct", "flags")
    found = []
    for i in range(min(kv.mem.u32(nr), MAX_SWAPFILES)):
        si = kv.mem.ptr(table + i * kv.mem.ptr_size)
        if si and kv.mem.ptr(si + flags) & SWP_USED:
            found.append(si)
    return found


def swap_usage(mem: AddressSpace, types: TypeRegistry, si: int) -> tuple[int, int]:
    """(pages, in use) of one ``struct swap_info_struct``: ``inuse_pages`` is an unsigned
    int up to 6.x and an atomic_long_t (its ``counter``) since 7.0."""
    info = Object(mem, types.lookup("struct swap_info_struct"), si)
    inuse = info.member("inuse_pages")
    return int(info.member("pages")), int(inuse.member("counter") if inuse.kind == "struct" else inuse)


def swap_pages(kv: KernelVars) -> tuple[int, int]:
    """(total, in use) swap pages over the swap_info entries in use."""
    counts = [swap_usage(kv.mem, kv.types, si) for si in swap_infos(kv) or ()]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def shared_pages(km: KernelMemory, kv: KernelVars, problems: list[str]) -> int:
    """crash's SHARED: struct pages not PG_reserved whose _refcount is above 1."""
    reserved = flag_bit(kv.types, "PG_reserved")
    if reserved is None:
        raise SymbolError("no enum pageflags: PG_reserved is unknown")
    layout = PageLayout.from_kernel(km, kv.offsets)
    return sum(1 for p in pages(km, layout, present_sections(km), problems)
               if not p.flags >> reserved & 1 and p.count > 1)


def commit(kv: KernelVars, total: int, huge: int, swap: int) -> tuple[int, int] | None:
    """(CommitLimit, Committed_AS) as /proc/meminfo computes them, in pages."""
    if kv.lookup("sysctl_overcommit_memory") is None:
        return None
    kbytes = kv.lookup("sysctl_overcommit_kbytes")
    over_kb = kv.mem.ptr(kbytes) if kbytes is not None else 0
    if over_kb:
        allowed = over_kb >> 2
    else:
        allowed = (total - huge) * kv.mem.u32(kv.need("sysctl_overcommit_ratio")) // 100
    counter = kv.need("vm_committed_as") + kv.offsets.offsetof("percpu_counter", "count")
    committed = max(kv.mem.read_int(counter, 8, signed=True), 0)
    return allowed + swap, committed


def kmem_summary(km: KernelMemory, kv: KernelVars, problems: list[str]) -> MemSummary:
    """Every number of crash's kmem -i."""
    total = kv.mem.ptr(kv.need("_totalram_pages"))
    node = next(c for c in vm_stat(kv) if c.title == "VM_NODE_STAT")
    buffers = blockdev_pages(kv)
    cached = max((node.get("NR_FILE_PAGES") or 0) - (node.get("NR_SWAPCACHE") or 0) - buffers, 0)
    slab = (node.get("NR_SLAB_RECLAIMABLE_B") or 0) + (node.get("NR_SLAB_UNRECLAIMABLE_B") or 0)
    huge_total, huge_free = hugetlb_pages(kv)
    swap_total, swap_used = swap_pages(kv)
    try:
        shared: int | None = shared_pages(km, kv, problems)
    except PmdbError as err:
        problems.append(f"SHARED: {err}")
        shared = None
    limits = commit(kv, total, huge_total, swap_total)
    return MemSummary(total, free_pages(kv), shared, buffers, cached, slab, huge_total, huge_free,
                      swap_total, swap_used, *(limits or (None, None)))
