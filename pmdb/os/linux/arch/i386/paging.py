"""32-bit x86 page-table walks as ``::vtop`` shows them: every entry met, its flags, lowmem.

The walk is pmdb.memory.i386's; the x86 names of an entry's bits are the
same as on x86-64 (pmdb.os.linux.arch.x86_64.paging.entry_flags), NX being
bit 63 of a PAE entry (a two-level entry has no NX).
"""

from __future__ import annotations

from pmdb.errors import FaultError
from pmdb.memory.i386 import I386KernelSpace
from pmdb.memory.paged import Entry
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import PageEntry, Translation
from pmdb.os.linux.arch.x86_64.paging import entry_flags


def paged(space: AddressSpace) -> I386KernelSpace:
    """The i386 kernel space under a generic AddressSpace."""
    if not isinstance(space, I386KernelSpace):
        raise TypeError(f"not an i386 kernel space: {space!r}")
    return space


def translate(space: AddressSpace, addr: int) -> Translation:
    """Walk the page tables for addr; a missing level ends the walk with its reason."""
    ks = paged(space)
    root_level = ks.levels[0].name
    try:
        phys, entries = ks.vtop(addr)
    except FaultError as err:
        return Translation(addr, ks.root, root_level, _named(ks.walk_entries(addr)), None, 0, err.reason)
    shift = next(lv.shift for lv in ks.levels if lv.name == entries[-1].level)
    return Translation(addr, ks.root, root_level, _named(entries), phys, 1 << shift)


def _named(entries: list[Entry]) -> list[PageEntry]:
    return [PageEntry(e.level, e.address, e.value, entry_flags(e.value, e.level)) for e in entries]


def with_root(space: AddressSpace, root: int) -> I386KernelSpace:
    """The same physical memory walked from another top-level table (a process's CR3)."""
    ks = paged(space)
    mask = 0xFFFF_FFE0 if ks.format.entry_size == 8 else 0xFFFF_F000   # a PAE CR3 is 32-byte aligned
    out = I386KernelSpace(ks.phys, root & mask, ks.format, ks.page_offset)
    out.set_lowmem(ks.lowmem_size)
    return out


def fast_path(space: AddressSpace, addr: int) -> tuple[str, int] | None:
    """What the lowmem rule says, to show next to the walk."""
    phys = paged(space).direct_phys(addr)
    return ("direct-map", phys) if phys is not None else None
