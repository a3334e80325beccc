"""The x86-64 kernel's virtual address space over a physical one.

The page-table format is data: a tuple of levels (name, shift, bits, whether
a large page may end the walk there), one tuple for 4-level and one for
5-level paging. Two regions skip the walk because their rule is arithmetic:
the kernel image (phys = vaddr - __START_KERNEL_map + phys_base) and the
direct map (phys = vaddr - page_offset_base). Everything else (vmalloc,
modules, vmemmap, fixmap) is walked, and each walk is cached per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmdb.errors import FaultError
from pmdb.memory.paged import PagedSpace
from pmdb.memory.space import AddressSpace

START_KERNEL_MAP = 0xFFFFFFFF80000000
KERNEL_IMAGE_SIZE = 1 << 30  # with KASLR (CONFIG_RANDOMIZE_BASE); 512 MB without

_PRESENT = 1 << 0
_PSE = 1 << 7  # a large page ends the walk at this level
_PHYS_MASK = 0x000F_FFFF_FFFF_F000  # bits 12..51: the next table or the page frame


@dataclass(frozen=True)
class Level:
    """One page-table level: its index bits are ``addr >> shift`` masked to ``bits``."""

    name: str
    shift: int
    bits: int = 9
    large: bool = False  # whether PSE here maps a page of 1 << shift bytes

    def index(self, addr: int) -> int:
        return (addr >> self.shift) & ((1 << self.bits) - 1)


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


@dataclass(frozen=True)
class Entry:
    """One page-table entry met on a walk, for ::vtop."""

    level: str
    address: int  # physical address of the entry itself
    value: int


def canonical(addr: int, va_bits: int) -> bool:
    """Whether the bits above va_bits all copy the top bit, as the CPU requires."""
    top = addr >> (va_bits - 1)
    return top == 0 or top == (1 << (64 - va_bits + 1)) - 1


class KernelSpace(PagedSpace):
    """Kernel virtual memory: arithmetic fast paths, page-table walks for the rest."""

    def __init__(self, phys: AddressSpace, root: int, phys_base: int, five_level: bool = False,
                 image_size: int = KERNEL_IMAGE_SIZE, sme_mask: int = 0) -> None:
        super().__init__(phys, 8, (12, 21, 30))
        self.root = root  # physical address of the top-level table
        self.phys_base = phys_base
        self.levels = LEVELS_5 if five_level else LEVELS_4
        self.va_bits = 57 if five_level else 48
        self.image_size = image_size
        self._entry_mask = _PHYS_MASK & ~sme_mask  # SME's C-bit is not part of the address
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
        """(physical address, bytes left in its page or region): fast paths, then the cache."""
        phys = self.image_phys(addr)
        if phys is not None:
            return phys, START_KERNEL_MAP + self.image_size - addr
        phys = self.direct_phys(addr)
        if phys is not None:
            return phys, self.direct_size - phys
        return self.cached_walk(addr)

    def _walk(self, addr: int) -> tuple[int, int, list[Entry]]:
        """(page frame, page shift, entries) for addr, or FaultError naming the level."""
        if not canonical(addr, self.va_bits):
            raise FaultError(addr, 1, "non-canonical address")
        table = self.root
        entries: list[Entry] = []
        for level in self.levels:
            slot = table + level.index(addr) * 8
            try:
                value = self.phys.u64(slot)
            except FaultError as err:
                raise FaultError(addr, 1, f"{level.name} table at physical {table:#x} is not in the dump"
                                 f" ({err.reason})") from None
            entries.append(Entry(level.name, slot, value))
            if not value & _PRESENT:
                above = f" ({entries[-2].level} entry {entries[-2].value:#x})" if len(entries) > 1 else ""
                raise FaultError(addr, 1, f"no {level.name} entry for {addr:#x}{above}")
            if level.shift == 12 or (level.large and value & _PSE):
                frame = value & self._entry_mask & ~((1 << level.shift) - 1)
                return frame, level.shift, entries
            table = value & self._entry_mask
        raise AssertionError("the last level always ends the walk")
