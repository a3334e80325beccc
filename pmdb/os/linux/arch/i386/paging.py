"""32-bit x86 page-table walks as ``::vtop`` shows them: every entry met, its flags, lowmem.

The walk is pmdb.memory.paged's and the x86 names of an entry's bits are the
same as on x86-64, so ::vtop's view is x86-64's (pmdb.os.linux.arch.x86_64.paging.walk);
NX is bit 63 of a PAE entry (a two-level entry has no NX).
"""

from __future__ import annotations

from pmdb.memory.i386 import I386KernelSpace
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import Translation
from pmdb.os.linux.arch.x86_64.paging import walk


def paged(space: AddressSpace) -> I386KernelSpace:
    """The i386 kernel space under a generic AddressSpace."""
    if not isinstance(space, I386KernelSpace):
        raise TypeError(f"not an i386 kernel space: {space!r}")
    return space


def translate(space: AddressSpace, addr: int) -> Translation:
    """Walk the page tables for addr; a missing level ends the walk with its reason."""
    return walk(paged(space), addr)


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
