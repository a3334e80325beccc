"""The arm64 kernel's virtual address space over a physical one (4 KB granule).

The translation table format is data: the levels follow from VA_BITS (48 bits:
four levels PGD/PUD/PMD/PTE; 39 bits: three, PGD/PMD/PTE), each resolving 9
bits. Two regions skip the walk because their rule is arithmetic (5.4+ layout,
arch/arm64/include/asm/memory.h): the linear map, ``phys = vaddr - PAGE_OFFSET
+ PHYS_OFFSET`` with ``PAGE_OFFSET = -(1 << VA_BITS)``, and the kernel image,
``phys = vaddr - kimage_voffset``. Everything else (vmalloc, modules, vmemmap,
fixmap) is walked, and each walk is cached per page.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.errors import FaultError
from pmdb.memory.paged import MASK64, TranslatedSpace, WalkCache
from pmdb.memory.space import AddressSpace

PAGE_SHIFT = 12
VALID = 1 << 0
TABLE = 1 << 1          # at levels above the last: a table (else a block); at the last: a page
OA_MASK = 0x0000_FFFF_FFFF_F000     # output address bits 47..12
OA_MASK_LPA2 = 0x0003_FFFF_FFFF_F000    # with 52-bit VAs on 4 KB pages (FEAT_LPA2): bits 49..12,
                                        # and OA[51:50] in descriptor bits 9..8


@dataclass(frozen=True)
class Level:
    """One translation level: its index is ``addr >> shift`` masked to ``bits``."""

    name: str
    shift: int
    bits: int = 9

    def index(self, addr: int) -> int:
        return (addr >> self.shift) & ((1 << self.bits) - 1)

    @property
    def block_ok(self) -> bool:
        """Whether a block descriptor may end the walk here (1 GB at level 1, 2 MB at 2)."""
        return self.shift in (21, 30)


def levels_for(va_bits: int) -> tuple[Level, ...]:
    """The levels a walk of a VA_BITS-wide address takes with 4 KB pages."""
    if not 25 <= va_bits <= 52:
        raise ValueError(f"VA_BITS {va_bits} is not supported with 4 KB pages (25..52)")
    count = (va_bits - PAGE_SHIFT + 8) // 9
    names = {5: ("PGD", "P4D", "PUD", "PMD", "PTE"), 4: ("PGD", "PUD", "PMD", "PTE"), 3: ("PGD", "PMD", "PTE"),
             2: ("PGD", "PTE")}[count]
    shifts = [PAGE_SHIFT + 9 * (count - 1 - i) for i in range(count)]
    top_bits = va_bits - shifts[0]
    return tuple(Level(n, s, top_bits if i == 0 else 9) for i, (n, s) in enumerate(zip(names, shifts, strict=True)))


@dataclass(frozen=True)
class Entry:
    """One descriptor met on a walk, for ::vtop."""

    level: str
    address: int    # physical address of the descriptor itself
    value: int


def strip_tag(addr: int) -> int:
    """A kernel pointer with its top byte restored (KASAN/MTE tags live in bits 56..63)."""
    return addr | (0xFF << 56) if addr >> 55 & 1 else addr & ~(0xFF << 56)


class Arm64KernelSpace(TranslatedSpace):
    """Kernel virtual memory: linear-map and image fast paths, table walks for the rest."""

    def __init__(self, phys: AddressSpace, root: int, va_bits: int, kimage_voffset: int,
                 phys_offset: int) -> None:
        super().__init__("little", 8)
        self.phys = phys
        self.root = root
        self.va_bits = va_bits
        self.levels = levels_for(va_bits)
        self.kimage_voffset = kimage_voffset & MASK64
        self.phys_offset = phys_offset
        self.page_offset = -(1 << va_bits) & MASK64
        # PAGE_END is _PAGE_END(VA_BITS_MIN): a 52-bit kernel's linear map ends where a 48-bit one's does
        self.page_end = -(1 << (min(va_bits, 48) - 1)) & MASK64
        self.lpa2 = va_bits > 48
        self.image: tuple[int, int] | None = None      # [_text, _end) once kallsyms is known
        self._cache = WalkCache((12, 21, 30))

    def set_image(self, start: int, end: int) -> None:
        """Enable the image fast path for [start, end) (from _text/_end)."""
        self.image = (start, end)

    # -- the rules --------------------------------------------------------------

    def image_phys(self, addr: int) -> int | None:
        if self.image is not None and self.image[0] <= addr < self.image[1]:
            return (addr - self.kimage_voffset) & MASK64
        return None

    def linear_phys(self, addr: int) -> int | None:
        if self.page_offset <= addr < self.page_end:
            return addr - self.page_offset + self.phys_offset
        return None

    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region)."""
        phys = self.image_phys(addr)
        if phys is not None:
            assert self.image is not None
            return phys, self.image[1] - addr
        phys = self.linear_phys(addr)
        if phys is not None:
            return phys, self.page_end - addr
        hit = self._cache.get(addr)
        if hit is not None:
            return hit
        frame, shift, _ = self.walk(addr)
        return self._cache.put(addr, frame, shift)

    def vtop(self, addr: int) -> tuple[int, list[Entry]]:
        """Walk the tables (never a fast path): the physical address and every entry met."""
        frame, shift, entries = self.walk(addr)
        return frame + (addr & ((1 << shift) - 1)), entries

    def walk(self, addr: int, entries: list[Entry] | None = None) -> tuple[int, int, list[Entry]]:
        """(frame, page shift, entries) for addr, or FaultError naming the level; ``entries``
        collects what was met even when it fails."""
        met = entries if entries is not None else []
        if addr >> self.va_bits not in (0, MASK64 >> self.va_bits):
            raise FaultError(addr, 1, f"outside the {self.va_bits}-bit address ranges (TTBR0/TTBR1)")
        table = self.root
        for i, level in enumerate(self.levels):
            slot = table + level.index(addr) * 8
            try:
                value = self.phys.u64(slot)
            except FaultError as err:
                raise FaultError(addr, 1, f"{level.name} table at physical {table:#x} is not in the dump"
                                 f" ({err.reason})") from None
            met.append(Entry(level.name, slot, value))
            if not value & VALID:
                above = f" ({met[-2].level} entry {met[-2].value:#x})" if len(met) > 1 else ""
                raise FaultError(addr, 1, f"no {level.name} entry for {addr:#x}{above}")
            last = i == len(self.levels) - 1
            if last or not value & TABLE:
                if not last and not level.block_ok:
                    raise FaultError(addr, 1, f"{level.name} entry {value:#x} is a block where none may be")
                frame = self.output_address(value) & ~((1 << level.shift) - 1)
                return frame, level.shift, met
            table = self.output_address(value)
        raise AssertionError("the last level always ends the walk")

    def output_address(self, value: int) -> int:
        """The physical address a descriptor names (next table, block or page)."""
        if self.lpa2:
            return value & OA_MASK_LPA2 | (value >> 8 & 3) << 50
        return value & OA_MASK
