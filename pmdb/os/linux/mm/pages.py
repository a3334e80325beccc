"""The kernel's struct page array: which page frames have one, and what each says.

With SPARSEMEM (every x86-64 and arm64 distribution kernel) memory comes in sections of
2^SECTION_SIZE_BITS bytes; ``mem_section`` (VMCOREINFO names it, its root count and
entry size) says which sections have a mem_map (SECTION_HAS_MEM_MAP), and with
SPARSEMEM_VMEMMAP a frame's struct page is ``vmemmap_base + pfn * sizeof(struct page)``.
crash's ``kmem -p`` and the SHARED line of ``kmem -i`` walk every struct page of every
such section; this module reads them a chunk at a time, so a walk costs one read per
64 pages. The page flags' names are the kernel's own (``pageflag_names``, as crash reads
them), else enum pageflags.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pmdb.errors import FaultError, SymbolError
from pmdb.os.linux.mm.kernel_memory import KernelMemory
from pmdb.symbols.kmodules import StructOffsets
from pmdb.types.registry import TypeRegistry

SECTION_HAS_MEM_MAP = 1 << 1
CHUNK = 64                  # struct pages per read
FLAG_NAMES_MAX = 64         # entries of pageflag_names read at most (6.1 has 26)


@dataclass(frozen=True)
class Page:
    """One struct page: its frame, address, and the fields crash's kmem -p shows."""

    pfn: int
    address: int
    flags: int
    count: int          # _refcount
    mapping: int
    index: int

    @property
    def physical(self) -> int:
        return self.pfn << 12


@dataclass(frozen=True)
class PageLayout:
    size: int
    flags: int
    refcount: int
    mapping: int
    index: int
    section_pages: int      # PAGES_PER_SECTION

    @classmethod
    def from_kernel(cls, km: KernelMemory, offsets: StructOffsets) -> PageLayout:
        info = km.info
        try:
            bits = info.number("SECTION_SIZE_BITS")
            size = info.size("page")
        except SymbolError:
            raise SymbolError("VMCOREINFO does not describe SPARSEMEM's sections: page frames are unknown") from None
        try:
            index = offsets.offsetof("page", "index")
        except SymbolError:                         # 6.16 renamed it (folios own it now)
            index = offsets.offsetof("page", "__folio_index")
        return cls(size, offsets.offsetof("page", "flags"), offsets.offsetof("page", "_refcount"),
                   offsets.offsetof("page", "mapping"), index,
                   1 << (bits - km.info.page_size.bit_length() + 1))


def present_sections(km: KernelMemory) -> list[int]:
    """The numbers of the memory sections that have a mem_map, in order."""
    info = km.info
    try:
        roots, entry = info.symbol("mem_section"), info.size("mem_section")
        nroots = info.length("mem_section")
        map_off = info.offset("mem_section", "section_mem_map")
    except SymbolError:
        raise SymbolError("VMCOREINFO names no mem_section: page frames are unknown") from None
    per_root = info.page_size // entry
    mem, w = km.space, km.space.ptr_size
    out: list[int] = []
    raw = mem.read(roots, w * nroots)
    for r in range(nroots):
        root = int.from_bytes(raw[w * r:w * r + w], mem.byteorder)
        if not root:
            continue
        sections = mem.read(root, entry * per_root)
        for i in range(per_root):
            coded = int.from_bytes(sections[entry * i + map_off:entry * i + map_off + w], mem.byteorder)
            if coded & SECTION_HAS_MEM_MAP:
                out.append(r * per_root + i)
    return out


def pages(km: KernelMemory, layout: PageLayout, sections: list[int], problems: list[str]) -> Iterator[Page]:
    """Every struct page of the sections, in frame order; a chunk the dump lacks is one
    line in ``problems`` and is skipped."""
    for nr in sections:
        first = nr * layout.section_pages
        for base in range(first, first + layout.section_pages, CHUNK):
            addr = km.page_struct(base)
            try:
                raw = km.space.read(addr, CHUNK * layout.size)
            except FaultError as err:
                problems.append(f"struct pages of frames {base:#x}-{base + CHUNK - 1:#x}: {err}")
                continue
            yield from _decode(raw, base, addr, layout, km.space.byteorder == "little")


def _decode(raw: bytes, pfn: int, addr: int, lay: PageLayout, little: bool) -> Iterator[Page]:
    e = "<" if little else ">"
    for i in range(len(raw) // lay.size):
        rec = i * lay.size
        flags, mapping, index = struct.unpack_from(f"{e}Q", raw, rec + lay.flags)[0], \
            struct.unpack_from(f"{e}Q", raw, rec + lay.mapping)[0], struct.unpack_from(f"{e}Q", raw, rec + lay.index)[0]
        count = struct.unpack_from(f"{e}i", raw, rec + lay.refcount)[0]
        yield Page(pfn + i, addr + rec, flags, count, mapping, index)


def read_page(km: KernelMemory, layout: PageLayout, pfn: int) -> Page:
    addr = km.page_struct(pfn)
    return next(_decode(km.space.read(addr, layout.size), pfn, addr, layout, km.space.byteorder == "little"))


def flag_names(km: KernelMemory, types: TypeRegistry) -> list[tuple[int, str]]:
    """(mask, name) of each page flag: the kernel's pageflag_names table (what %pGp prints,
    and crash), else enum pageflags' PG_ names."""
    table = km.lookup("pageflag_names")
    w = km.space.ptr_size
    out: list[tuple[int, str]] = []
    if table is not None:
        try:
            for i in range(FLAG_NAMES_MAX):
                mask, name = km.space.ptr(table + 2 * w * i), km.space.ptr(table + 2 * w * i + w)
                if not name:
                    break
                out.append((mask, km.space.cstring(name, 64).decode("ascii", "replace")))
            return out
        except FaultError:
            out = []
    enum = types.find("enum pageflags")
    if enum is None:
        return out
    return [(1 << v, n[3:]) for n, v in enum.strip().enumerators if n.startswith("PG_") and 0 <= v < 8 * w]


def flag_bit(types: TypeRegistry, name: str) -> int | None:
    """A page flag's bit (``PG_reserved``) from enum pageflags, or None."""
    enum = types.find("enum pageflags")
    if enum is None:
        return None
    return dict(enum.strip().enumerators).get(name)
