"""Where the x86-64 kernel put things: KASLR, phys_base, the randomized regions, per-CPU areas.

Built in two steps because of a bootstrap order: the page-table root and the
kernel-image rule come from VMCOREINFO alone (enough to decode kallsyms), and
the randomized region bases (``page_offset_base``, ``vmalloc_base``,
``vmemmap_base``) are variables that need a symbol table to find.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.memory.x86_64 import KERNEL_IMAGE_SIZE, START_KERNEL_MAP, KernelSpace
from pmdb.os.linux.arch import KernelLayout, read_nr_cpu_ids

# the regions' bases without CONFIG_RANDOMIZE_MEMORY (Documentation/x86/x86_64/mm.rst)
DEFAULTS_4 = {"page_offset_base": 0xFFFF888000000000, "vmalloc_base": 0xFFFFC90000000000,
              "vmemmap_base": 0xFFFFEA0000000000}
DEFAULTS_5 = {"page_offset_base": 0xFF11000000000000, "vmalloc_base": 0xFFA0000000000000,
              "vmemmap_base": 0xFFD4000000000000}
MODULES_END = 0xFFFFFFFFFF000000  # 4.x-6.x: the fixmap and vsyscall page follow
_PUD_SIZE = 1 << 30

Lookup = Callable[[str], "int | None"]


def kernel_space(phys: AddressSpace, info: VmcoreInfo) -> KernelSpace:
    """The kernel's virtual space from VMCOREINFO alone: image rule and page tables."""
    root_sym = "init_top_pgt" if info.has_symbol("init_top_pgt") else "swapper_pg_dir"
    try:
        root = info.symbol(root_sym)
    except SymbolError:
        raise FormatError("vmcoreinfo names no page table (init_top_pgt or swapper_pg_dir)") from None
    return KernelSpace.from_image_symbol(
        phys, root, info.number_or("phys_base", 0),
        five_level=bool(info.number_or("pgtable_l5_enabled", 0)),
        image_size=info.number_or("KERNEL_IMAGE_SIZE", KERNEL_IMAGE_SIZE),
        sme_mask=info.number_or("sme_mask", 0))


def attach_layout(space: KernelSpace, info: VmcoreInfo, lookup: Lookup) -> KernelLayout:
    """Read the region bases (``lookup`` gives a symbol's address) and switch on the
    direct-map fast path."""
    five = len(space.levels) == 5
    defaults = DEFAULTS_5 if five else DEFAULTS_4
    bases = {name: _read_base(space, lookup, name) for name in defaults}
    if bases["page_offset_base"] is None:
        bases["page_offset_base"] = _direct_map_from_vmcoreinfo(space, info)
    values = {name: (v if v is not None else defaults[name]) for name, v in bases.items()}
    layout = KernelLayout(
        mem=space, kernel_offset=info.kernel_offset, phys_base=space.phys_base, image_start=START_KERNEL_MAP,
        page_offset_base=values["page_offset_base"], vmalloc_base=values["vmalloc_base"],
        vmemmap_base=values["vmemmap_base"],
        modules_start=START_KERNEL_MAP + space.image_size, modules_end=MODULES_END,
        per_cpu_offset_addr=lookup("__per_cpu_offset"), nr_cpu_ids=read_nr_cpu_ids(space, lookup))
    space.set_direct_map(layout.page_offset_base, _direct_map_size(layout, info))
    return layout


def _read_base(space: KernelSpace, lookup: Lookup, name: str) -> int | None:
    addr = lookup(name)
    if addr is None:
        return None
    try:
        return space.u64(addr)
    except FaultError:
        return None


def _direct_map_from_vmcoreinfo(space: KernelSpace, info: VmcoreInfo) -> int | None:
    """page_offset_base from a direct-map address VMCOREINFO names (``mem_section`` is
    allocated from memblock) and the page tables; KASLR aligns the base to 1 GB."""
    if not info.has_symbol("mem_section"):
        return None
    vaddr = info.symbol("mem_section")
    try:
        phys, _ = space.vtop(vaddr)
    except FaultError:
        return None
    base = vaddr - phys
    return base if base % _PUD_SIZE == 0 else None


def _direct_map_size(layout: KernelLayout, info: VmcoreInfo) -> int:
    """At most 2**MAX_PHYSMEM_BITS, and never into the next region KASLR placed after it."""
    size = 1 << info.number_or("MAX_PHYSMEM_BITS", 46)
    later = [b for b in (layout.vmalloc_base, layout.vmemmap_base) if b > layout.page_offset_base]
    if later:
        size = min(size, min(later) - layout.page_offset_base)
    return size
