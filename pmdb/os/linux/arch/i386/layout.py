"""Where the 32-bit x86 kernel put things: lowmem, vmalloc, pkmap/fixmap, per-CPU areas.

The kernel image is inside the direct map ("lowmem", from PAGE_OFFSET up to
``high_memory``), so VMCOREINFO's ``swapper_pg_dir`` gives the page-table
root by subtraction; with RANDOMIZE_BASE the image moves physically and
virtually by the same amount, which keeps that rule. vmalloc starts 8 MB
above ``high_memory`` (VMALLOC_OFFSET); modules live in vmalloc space; above
vmalloc come the pkmap window and the fixmap. FLATMEM kernels (Debian's)
keep every ``struct page`` in the ``mem_map`` array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.memory.i386 import PAE, PAGE_OFFSET, TWO_LEVEL, I386KernelSpace
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout, read_nr_cpu_ids

VMALLOC_OFFSET = 8 << 20
# the top of vmalloc with HIGHMEM: below the pkmap window and the fixmap
# (arch/x86/include/asm/pgtable_32_areas.h); an estimate, used only to name regions
VMALLOC_END_ESTIMATE = 0xFF800000
_LOWMEM_MAX = 896 << 20          # the default __VMALLOC_RESERVE leaves at most 896 MB of lowmem

Lookup = Callable[[str], "int | None"]


@dataclass
class I386Layout(KernelLayout):
    """KernelLayout with the i386 regions: the image is inside the direct map."""

    high_memory: int = 0
    image_end: int = 0

    def region(self, addr: int) -> str:
        if addr < self.page_offset_base:
            return "user"
        if self.image_start <= addr < self.image_end:
            return "kernel image"
        if addr < self.high_memory:
            return "direct map"
        if self.vmalloc_base <= addr < self.modules_end:
            return "vmalloc"
        if addr >= self.modules_end:
            return "pkmap/fixmap"
        return "kernel (unknown region)"


def page_offset(info: VmcoreInfo) -> int:
    """PAGE_OFFSET: VMCOREINFO's when it says, else the 3G/1G split's."""
    return info.number_or("PAGE_OFFSET", PAGE_OFFSET) & 0xFFFFFFFF


def kernel_space(phys: AddressSpace, info: VmcoreInfo) -> I386KernelSpace:
    """The kernel's virtual space from VMCOREINFO alone: swapper_pg_dir, walked."""
    try:
        root_v = info.symbol("swapper_pg_dir")
    except SymbolError:
        raise FormatError("vmcoreinfo names no page table (swapper_pg_dir)") from None
    base = page_offset(info)
    if root_v < base:
        raise FormatError(f"swapper_pg_dir {root_v:#x} is below PAGE_OFFSET {base:#x}")
    fmt = PAE if info.config("X86_PAE") else TWO_LEVEL
    space = I386KernelSpace(phys, root_v - base, fmt, base)
    # the image is in lowmem: map it by arithmetic from the start, as far as the tables do
    space.set_lowmem(lowmem_size(space))
    return space


def attach_layout(space: I386KernelSpace, info: VmcoreInfo, lookup: Lookup) -> I386Layout:
    """Find where lowmem ends and read mem_map, then bound the direct-map rule to lowmem.
    Debian's 32-bit kernels have no KALLSYMS_ALL, so data symbols come from VMCOREINFO
    when kallsyms lacks them, and high_memory from the page tables when neither has it."""
    def find(name: str) -> int | None:
        addr = lookup(name)
        return addr if addr is not None else info.symbols.get(name)

    high = _read_ptr(space, find("high_memory"))
    if high is None or not space.page_offset < high <= 0xFFFFFFFF:
        high = space.page_offset + lowmem_size(space)
    space.set_lowmem(high - space.page_offset)
    vmalloc = (high + VMALLOC_OFFSET) & ~(VMALLOC_OFFSET - 1)
    mem_map = _read_ptr(space, find("mem_map")) or 0
    text = find("_text") or find("_stext") or space.page_offset
    end = find("_end") or find("_etext") or text
    return I386Layout(
        mem=space, kernel_offset=info.kernel_offset, phys_base=0, image_start=text,
        page_offset_base=space.page_offset, vmalloc_base=vmalloc, vmemmap_base=mem_map,
        modules_start=vmalloc, modules_end=VMALLOC_END_ESTIMATE,
        per_cpu_offset_addr=find("__per_cpu_offset"), nr_cpu_ids=read_nr_cpu_ids(space, find),
        high_memory=high, image_end=end)


def lowmem_size(space: I386KernelSpace, step: int = 1 << 21) -> int:
    """How far the kernel's tables map PAGE_OFFSET + x to physical x (high_memory -
    PAGE_OFFSET): the first 2 MB step whose first page maps elsewhere or not at all ends
    lowmem, and the pages of the step before it say where exactly. At most 896 MB."""
    def identity(offset: int) -> bool:
        try:
            return space.vtop(space.page_offset + offset)[0] == offset
        except FaultError:
            return False

    size = 0
    while size < _LOWMEM_MAX and space.page_offset + size < 1 << 32 and identity(size):
        size += step
    if size == 0:
        return step
    # the last step may end inside: high_memory is page-aligned, not step-aligned
    last = size - step
    for offset in range(last + 4096, size, 4096):
        if not identity(offset):
            return offset
    return size


def _read_ptr(space: I386KernelSpace, addr: int | None) -> int | None:
    if addr is None:
        return None
    try:
        return space.ptr(addr)
    except FaultError:
        return None

