"""Where the arm64 kernel put things: VA_BITS, KASLR (kimage_voffset), PHYS_OFFSET, the regions.

Built in two steps like x86-64's: VMCOREINFO alone gives the table root
(``swapper_pg_dir``, an image address: phys = vaddr - kimage_voffset) and the
linear-map rule, enough to decode kallsyms; the image bounds (``_text``,
``_end``) then switch on the image fast path. Region bases follow the 5.4+
layout (arch/arm64/include/asm/memory.h) unless VMCOREINFO names them (6.5+
exports MODULES_VADDR .. VMEMMAP_END).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FormatError, SymbolError
from pmdb.memory.aarch64 import MASK64, Arm64KernelSpace
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout, read_nr_cpu_ids

Lookup = Callable[[str], "int | None"]
_STRUCT_PAGE = 64
_SZ_128M, _SZ_2G, _SZ_1G = 1 << 27, 1 << 31, 1 << 30


def va_bits(info: VmcoreInfo) -> int:
    """The kernel's VA width: 64 - TCR_EL1.T1SZ when exported (5.13+), else VA_BITS."""
    t1sz = info.numbers.get("tcr_el1_t1sz", info.numbers.get("TCR_EL1_T1SZ"))
    if t1sz:
        return 64 - t1sz
    try:
        return info.number("VA_BITS")
    except SymbolError:
        raise FormatError("vmcoreinfo has no NUMBER(VA_BITS): not an arm64 kernel's") from None


def kernel_space(phys_space: AddressSpace, info: VmcoreInfo) -> Arm64KernelSpace:
    """The kernel's virtual space from VMCOREINFO alone: table root and the linear map."""
    try:
        voffset = info.number("kimage_voffset")
        phys_offset = info.number("PHYS_OFFSET")
        root = info.symbol("swapper_pg_dir")
    except SymbolError as err:
        raise FormatError(f"not an arm64 kernel's vmcoreinfo: {err}") from None
    bits = va_bits(info)
    try:
        return Arm64KernelSpace(phys_space, (root - voffset) & MASK64, bits, voffset, phys_offset)
    except ValueError as err:
        raise FormatError(str(err)) from None


@dataclass
class Arm64Layout(KernelLayout):
    """arm64's regions: modules below the image, vmalloc around it, vmemmap near the top."""

    image_end: int = 0
    vmalloc_end: int = 0
    vmemmap_start: int = 0
    linear_start: int = 0
    linear_end: int = 0
    pac_mask: int = 0               # the PAC bits of a signed kernel return address

    def region(self, addr: int) -> str:
        if addr >> 63 == 0:
            return "user"
        if self.image_start <= addr < self.image_end:
            return "kernel image"
        if self.modules_start <= addr < self.modules_end:
            return "module space"
        if self.linear_start <= addr < self.linear_end:
            return "direct map"
        if self.vmalloc_base <= addr < self.vmalloc_end:
            return "vmalloc"
        if self.vmemmap_start <= addr < self.vmemmap_start + (1 << 42):
            return "vmemmap"
        return "kernel (unknown region)"


def attach_layout(space: Arm64KernelSpace, info: VmcoreInfo, lookup: Lookup) -> Arm64Layout:
    """Image bounds from kallsyms, region bases from VMCOREINFO or the 5.4+ formulas."""
    start = lookup("_text") or lookup("_stext")
    end = lookup("_end") or lookup("__bss_stop") or _last_known(lookup, start)
    if start is not None and end is not None and 0 < end - start < 1 << 30:
        space.set_image(start, end)
    bits = space.va_bits
    modules = info.numbers.get("MODULES_VADDR", space.page_end)
    # MODULES_VSIZE: 128 MB until 6.4, 2 GB since 6.5 (which also exports it)
    modules_end = info.numbers.get("MODULES_END", modules + _SZ_128M)
    vmemmap_start = info.numbers.get("VMEMMAP_START", -(1 << (bits - 6)) & MASK64)
    vmalloc_end = info.numbers.get("VMALLOC_END", (vmemmap_start - 2 * _SZ_128M) & MASK64)
    # the kernel's ``vmemmap``: struct page of pfn 0, below VMEMMAP_START by memstart's pages
    vmemmap = (vmemmap_start - (space.phys_offset >> 12) * info.sizes.get("page", _STRUCT_PAGE)) & MASK64
    return Arm64Layout(
        mem=space, kernel_offset=info.kernel_offset, phys_base=space.phys_offset,
        # page_offset_base is where physical 0 would be in the linear map (__phys_to_virt),
        # so the generic "vaddr = page_offset_base + phys" holds as on x86-64
        image_start=start or modules_end, page_offset_base=(space.page_offset - space.phys_offset) & MASK64,
        vmalloc_base=info.numbers.get("VMALLOC_START", modules_end), vmemmap_base=vmemmap,
        modules_start=modules, modules_end=modules_end,
        per_cpu_offset_addr=lookup("__per_cpu_offset"), nr_cpu_ids=read_nr_cpu_ids(space, lookup),
        image_end=end or 0, vmalloc_end=vmalloc_end, vmemmap_start=vmemmap_start,
        linear_start=space.page_offset, linear_end=space.page_end, pac_mask=pac_mask(info, bits))


# data symbols late in the image, for its end when kallsyms names no _end (no KALLSYMS_ALL)
_LATE = ("max_pfn", "init_task", "__per_cpu_offset", "nr_cpu_ids", "slab_caches", "modules", "panic_cpu",
         "init_pid_ns", "node_data", "prb", "clear_seq", "mem_section", "init_uts_ns")


def _last_known(lookup: Lookup, start: int | None) -> int | None:
    """Just past the last recovered image symbol: the image's end as far as pmdb can tell."""
    if start is None:
        return None
    found = [a for a in (lookup(n) for n in _LATE) if a is not None and 0 < a - start < 1 << 30]
    return max(found) + 8 if found else None


def pac_mask(info: VmcoreInfo, bits: int) -> int:
    """NUMBER(KERNELPACMASK) (5.7+, when the CPU signs pointers), else the bits above VA_BITS:
    stripping them from an unsigned address changes nothing."""
    return info.numbers.get("KERNELPACMASK", MASK64 & ~((1 << bits) - 1)) & MASK64
