"""The x86-64 kernel's virtual address space over a physical one.

The page-table format is data: a tuple of levels (name, shift, bits, whether
a large page may end the walk there), one tuple for 4-level and one for
5-level paging. Two regions skip the walk because their rule is arithmetic:
the kernel image (phys = vaddr - __START_KERNEL_map + phys_base) and the
direct map (phys = vaddr - page_offset_base). Everything else (vmalloc,
modules, vmemmap, fixmap) is walked, and each walk is cached per page.
"""

from __future__ import annotations

from typing import Any

from pmdb.errors import FaultError
from pmdb.memory.paged import Level, PagedSpace
from pmdb.memory.space import AddressSpace

START_KERNEL_MAP = 0xFFFFFFFF80000000
KERNEL_IMAGE_SIZE = 1 << 30  # with KASLR (CONFIG_RANDOMIZE_BASE); 512 MB without

_PHYS_MASK = 0x000F_FFFF_FFFF_F000  # bits 12..51: the next table or the page frame


LEVELS_4 = (
    Level("PGD", 39),
    Level("PUD", 30, large=True),
    Level("PMD", 21, large=True),
    Level("PTE", 12),
)
LEVELS_5 = (
    Level("PGD", 48),
    Level("P4D", 39),
    Level("PUD", 30, large=True),
    Level("PMD", 21, large=True),
    Level("PTE", 12),
)


def canonical(addr: int, va_bits: int) -> bool:
    """Whether the bits above va_bits all copy the top bit, as the CPU requires."""
    top = addr >> (va_bits - 1)
    return top == 0 or top == (1 << (64 - va_bits + 1)) - 1


class KernelSpace(PagedSpace):
    """Kernel virtual memory: arithmetic fast paths, page-table walks for the rest."""

    def __init__(self, phys: AddressSpace, root: int, phys_base: int, five_level: bool = False,
                 image_size: int = KERNEL_IMAGE_SIZE, sme_mask: int = 0) -> None:
        # SME's C-bit is not part of an entry's address
        super().__init__(phys, 8, (12, 21, 30), root, LEVELS_5 if five_level else LEVELS_4, 8,
                         _PHYS_MASK & ~sme_mask)
        self.phys_base = phys_base
        self.va_bits = 57 if five_level else 48
        self.image_size = image_size
        self.direct_base: int | None = None
        self.direct_size = 0

    @classmethod
    def from_image_symbol(cls, phys: AddressSpace, pgt_vaddr: int, phys_base: int,
                          five_level: bool = False, **kw: Any) -> KernelSpace:
        """A space rooted at a page table named by its kernel-image address (init_top_pgt)."""
        root = pgt_vaddr - START_KERNEL_MAP + phys_base
        return cls(phys, root, phys_base, five_level, **kw)

    def set_direct_map(self, base: int, size: int) -> None:
        """Enable the direct-map fast path once page_offset_base is known."""
        self.direct_base = base
        self.direct_size = size
        self.flush()

    # -- translation ---------------------------------------------------------

    def image_phys(self, addr: int) -> int | None:
        """The kernel-image rule, or None when addr is outside the image region."""
        if START_KERNEL_MAP <= addr < START_KERNEL_MAP + self.image_size:
            return addr - START_KERNEL_MAP + self.phys_base
        return None

    def direct_phys(self, addr: int) -> int | None:
        """The direct-map rule, or None outside it (or before page_offset_base is known)."""
        base = self.direct_base
        if base is not None and base <= addr < base + self.direct_size:
            return addr - base
        return None

    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region): the image's and the direct
        map's rules (image_phys and direct_phys, written out here: every read of a kernel
        structure comes through), then the cache."""
        if START_KERNEL_MAP <= addr < START_KERNEL_MAP + self.image_size:
            return addr - START_KERNEL_MAP + self.phys_base, START_KERNEL_MAP + self.image_size - addr
        base = self.direct_base
        if base is not None and base <= addr < base + self.direct_size:
            return addr - base, base + self.direct_size - addr
        return self.cached_walk(addr)

    def check(self, addr: int) -> None:
        if not canonical(addr, self.va_bits):
            raise FaultError(addr, 1, "non-canonical address")
