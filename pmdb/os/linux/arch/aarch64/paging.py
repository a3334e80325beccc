"""arm64 table walks as ``::vtop`` shows them: every descriptor met, its bits named, the fast paths.

The walk is pmdb.memory.aarch64's; this adds the ARMv8 names of each
descriptor's bits (VALID, TABLE/BLOCK/PAGE, AF, AP, SH, nG, PXN, UXN ...) and
the arithmetic rule (kernel image, linear map) that maps an address without
a walk.
"""

from __future__ import annotations

from pmdb.errors import FaultError
from pmdb.memory.aarch64 import TABLE, VALID, Arm64KernelSpace, Entry
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import PageEntry, Translation

# lower and upper attributes of block and page descriptors (pgtable-hwdef.h)
_LEAF_BITS = ((5, "NS"), (10, "AF"), (11, "nG"), (51, "DBM"), (52, "CONT"), (53, "PXN"), (54, "UXN"))
_AP = {0: "AP=RW", 1: "AP=RW/EL0", 2: "AP=RO", 3: "AP=RO/EL0"}
_SH = {0: "", 1: "SH=?", 2: "SH=OUTER", 3: "SH=INNER"}
# table descriptors' hierarchical controls (PXNTable .. NSTable)
_TABLE_BITS = ((59, "PXNTable"), (60, "UXNTable"), (63, "NSTable"))


def paged(space: AddressSpace) -> Arm64KernelSpace:
    """The arm64 kernel space under a generic AddressSpace."""
    if not isinstance(space, Arm64KernelSpace):
        raise TypeError(f"not an arm64 kernel space: {space!r}")
    return space


def translate(space: AddressSpace, addr: int) -> Translation:
    """Walk the tables for addr; a missing level ends the walk with its reason, not an error."""
    ks = paged(space)
    met: list[Entry] = []
    try:
        frame, shift, _ = ks.walk(addr, met)
    except FaultError as err:
        return Translation(addr, ks.root, ks.levels[0].name, _named(ks, met), None, 0, err.reason)
    return Translation(addr, ks.root, ks.levels[0].name, _named(ks, met),
                       frame + (addr & ((1 << shift) - 1)), 1 << shift)


def _named(ks: Arm64KernelSpace, entries: list[Entry]) -> list[PageEntry]:
    last = ks.levels[-1].name
    return [PageEntry(e.level, e.address, e.value, entry_flags(e.value, e.level == last, ks.lpa2))
            for e in entries]


def entry_flags(value: int, last_level: bool, lpa2: bool = False) -> str:
    """``VALID|PAGE|AF|AP=RW|SH=INNER|PXN|UXN|AttrIndx=0`` and the like."""
    if not value & VALID:
        return "invalid"
    names = ["VALID"]
    if value & TABLE and not last_level:
        names.append("TABLE")
        names += [name for bit, name in _TABLE_BITS if value >> bit & 1]
        return "|".join(names)
    names.append("PAGE" if last_level else "BLOCK")
    names += [name for bit, name in _LEAF_BITS if value >> bit & 1 and bit < 11]
    names.append(_AP[value >> 6 & 3])
    sh = "" if lpa2 else _SH[value >> 8 & 3]      # LPA2: bits 9..8 are OA[51:50], not SH
    if sh:
        names.append(sh)
    names += [name for bit, name in _LEAF_BITS if value >> bit & 1 and bit >= 11]
    names.append(f"AttrIndx={value >> 2 & 7}")
    return "|".join(names)


def with_root(space: AddressSpace, root: int) -> Arm64KernelSpace:
    """The same physical memory walked from another top-level table (a process's TTBR)."""
    ks = paged(space)
    # not page-aligned: a 16-entry top table (52-bit VAs) is a 128-byte slab object
    other = Arm64KernelSpace(ks.phys, root & ~0x3F, ks.va_bits, ks.kimage_voffset,
                             ks.phys_offset)
    if ks.image is not None:
        other.set_image(*ks.image)
    return other


def fast_path(space: AddressSpace, addr: int) -> tuple[str, int] | None:
    """What the arithmetic rules (image, linear map) say, to show next to the walk."""
    ks = paged(space)
    phys = ks.image_phys(addr)
    if phys is not None:
        return "kernel-image", phys
    phys = ks.linear_phys(addr)
    return ("linear-map", phys) if phys is not None else None
