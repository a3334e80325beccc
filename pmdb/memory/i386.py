"""The 32-bit x86 kernel's virtual address space over a physical one: PAE or two-level paging.

On i386 the kernel image lives inside the direct map ("lowmem"): for
``PAGE_OFFSET <= vaddr < high_memory`` the rule is ``phys = vaddr -
PAGE_OFFSET``. Everything else (vmalloc, pkmap, fixmap, module space, and
before high_memory is known, all of it) is walked from ``swapper_pg_dir``.
The page-table formats are data, as for x86-64: PAE has a 4-entry PDPT, then
PMD (2 MB large pages) and PTE tables of 64-bit entries with NX at bit 63;
without PAE a 1024-entry PGD (4 MB large pages) and 32-bit PTEs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.errors import FaultError
from pmdb.memory.paged import Level, PagedSpace
from pmdb.memory.space import AddressSpace

PAGE_OFFSET = 0xC0000000         # the default 3G/1G split (CONFIG_PAGE_OFFSET)
_PSE = 1 << 7
_PAE_MASK = 0x000F_FFFF_FFFF_F000


@dataclass(frozen=True)
class Format:
    """One 32-bit paging format: its levels, entry width and frame mask."""

    name: str
    levels: tuple[Level, ...]
    entry_size: int
    mask: int

    def large(self, level: Level, value: int) -> bool:
        """Whether this entry maps a page itself (PSE), ending the walk."""
        return level.large and bool(value & _PSE)


PAE = Format("PAE", (Level("PDPT", 30, bits=2), Level("PMD", 21, large=True), Level("PTE", 12)),
             8, _PAE_MASK)
TWO_LEVEL = Format("2-level", (Level("PGD", 22, bits=10, large=True), Level("PTE", 12, bits=10)),
                   4, 0xFFFF_F000)


class I386KernelSpace(PagedSpace):
    """Kernel virtual memory on 32-bit x86: the lowmem rule, page-table walks for the rest."""

    def __init__(self, phys: AddressSpace, root: int, fmt: Format = PAE,
                 page_offset: int = PAGE_OFFSET, lowmem_size: int = 0) -> None:
        super().__init__(phys, 4, (12, 21, 22), root, fmt.levels, fmt.entry_size, fmt.mask)
        self.format = fmt
        self.page_offset = page_offset
        self.lowmem_size = lowmem_size       # 0 until high_memory is known: walk everything

    def set_lowmem(self, size: int) -> None:
        """Enable the direct-map rule for [PAGE_OFFSET, high_memory)."""
        self.lowmem_size = max(0, min(size, (1 << 32) - self.page_offset))
        self.flush()

    def direct_phys(self, addr: int) -> int | None:
        """The lowmem rule, or None outside lowmem (or before high_memory is known)."""
        if self.page_offset <= addr < self.page_offset + self.lowmem_size:
            return addr - self.page_offset
        return None

    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region)."""
        phys = self.direct_phys(addr)
        if phys is not None:
            return phys, self.lowmem_size - phys
        return self.cached_walk(addr)

    def check(self, addr: int) -> None:
        if not 0 <= addr < 1 << 32:
            raise FaultError(addr, 1, "not a 32-bit address")
