"""x86-64 page-table walks as ``::vtop`` shows them: every entry met, its flags, the fast paths.

The walk itself is pmdb.memory.x86_64's; this adds what a user reads: the
entries of a walk that failed (the level that was missing), the x86 names of
each entry's bits, and the arithmetic rule (kernel image, direct map) that
maps an address without a walk.
"""

from __future__ import annotations

from pmdb.errors import FaultError
from pmdb.memory.paged import Entry, PagedSpace
from pmdb.memory.space import AddressSpace
from pmdb.memory.x86_64 import KernelSpace
from pmdb.os.linux.arch import PageEntry, Translation

# x86 page-table entry bits (arch/x86/include/asm/pgtable_types.h)
_FLAG_BITS = ((0, "PRESENT"), (1, "RW"), (2, "USER"), (3, "PWT"), (4, "PCD"), (5, "ACCESSED"),
              (6, "DIRTY"), (7, "PSE"), (8, "GLOBAL"), (63, "NX"))
_TABLE_MASK = 0x000F_FFFF_FFFF_F000


def paged(space: AddressSpace) -> KernelSpace:
    """The x86-64 kernel space under a generic AddressSpace (the kernel model holds it so)."""
    if not isinstance(space, KernelSpace):
        raise TypeError(f"not an x86-64 kernel space: {space!r}")
    return space


def translate(space: AddressSpace, addr: int) -> Translation:
    """Walk the page tables for addr; a missing level ends the walk with its reason, not an error."""
    return walk(paged(space), addr)


def walk(ks: PagedSpace, addr: int) -> Translation:
    """translate() for any x86 paged space (i386's too): the entries met, with their flags."""
    root_level = ks.levels[0].name
    try:
        phys, entries = ks.vtop(addr)
    except FaultError as err:
        return Translation(addr, ks.root, root_level, _named(ks.walk_entries(addr)), None, 0,
                           err.reason)
    last = entries[-1]
    shift = next(lv.shift for lv in ks.levels if lv.name == last.level)
    return Translation(addr, ks.root, root_level, _named(entries), phys, 1 << shift)


def _named(entries: list[Entry]) -> list[PageEntry]:
    return [PageEntry(e.level, e.address, e.value, entry_flags(e.value, e.level)) for e in entries]


def entry_flags(value: int, level: str) -> str:
    """``PRESENT|RW|...``; bit 7 is PAT, not PSE, in a last-level entry."""
    names = [("PAT" if name == "PSE" and level == "PTE" else name)
             for bit, name in _FLAG_BITS if value >> bit & 1]
    return "|".join(names) or "none"


def with_root(space: AddressSpace, root: int) -> KernelSpace:
    """The same physical memory walked from another top-level table (a process's CR3)."""
    ks = paged(space)
    return KernelSpace(ks.phys, root & _TABLE_MASK, ks.phys_base, five_level=len(ks.levels) == 5,
                       image_size=ks.image_size)


def fast_path(space: AddressSpace, addr: int) -> tuple[str, int] | None:
    """What the arithmetic rules (image, direct map) say, to show next to the walk."""
    ks = paged(space)
    phys = ks.image_phys(addr)
    if phys is not None:
        return "kernel-image", phys
    phys = ks.direct_phys(addr)
    return ("direct-map", phys) if phys is not None else None
