"""32-bit x86 kernel address translation: PAE and two-level walks over page tables a small
builder makes, the lowmem rule and where lowmem ends, and ::vtop's entries and flags."""

from __future__ import annotations

import struct

import pytest

from pmdb.errors import FaultError
from pmdb.memory.i386 import PAE, PAGE_OFFSET, TWO_LEVEL, I386KernelSpace
from pmdb.os.linux.arch.i386 import paging
from pmdb.os.linux.arch.i386.layout import lowmem_size
from tests.test_x86_64_paging import PagesPhys

PRESENT_RW = 0x3
PSE = 0x80
NX = 1 << 63
PDPT, PMD0, PMD3, PTE = 0x1000, 0x2000, 0x3000, 0x4000


def put(phys: PagesPhys, addr: int, data: bytes) -> None:
    off = addr & 0xFFF
    phys.page(addr & ~0xFFF)[off:off + len(data)] = data


def pae_tables(lowmem_mb: int = 8) -> PagesPhys:
    """PAE: lowmem mapped by 2M pages from PAGE_OFFSET; one 4K page (NX) in vmalloc at
    0xf8000000 -> 0x123000; user 0x08048000 -> 0x200000 through PMD0."""
    phys = PagesPhys()
    put(phys, PDPT + 3 * 8, struct.pack("<Q", PMD3 | 1))
    put(phys, PDPT + 0 * 8, struct.pack("<Q", PMD0 | 1))
    for i in range(lowmem_mb // 2):
        put(phys, PMD3 + 8 * i, struct.pack("<Q", (i << 21) | PRESENT_RW | PSE))
    put(phys, PMD3 + 8 * ((0xF8000000 >> 21) & 511), struct.pack("<Q", PTE | PRESENT_RW))
    put(phys, PTE, struct.pack("<Q", 0x123000 | PRESENT_RW | NX))
    put(phys, PMD0 + 8 * ((0x08048000 >> 21) & 511), struct.pack("<Q", PTE | PRESENT_RW | 4))
    put(phys, PTE + 8 * ((0x08048000 >> 12) & 511), struct.pack("<Q", 0x200000 | PRESENT_RW | 4))
    put(phys, 0x123000 + 0x10, b"vmalloc!")
    return phys


def test_pae_walks_large_and_small_pages() -> None:
    space = I386KernelSpace(pae_tables(), PDPT, PAE)
    assert space.vtop(PAGE_OFFSET + 0x123456)[0] == 0x123456
    phys, entries = space.vtop(0xF8000010)
    assert phys == 0x123010
    assert [e.level for e in entries] == ["PDPT", "PMD", "PTE"]
    assert space.read(0xF8000010, 8) == b"vmalloc!"
    assert space.vtop(0x08048123)[0] == 0x200123


def test_lowmem_rule_stops_where_the_tables_stop_mapping_lowmem() -> None:
    space = I386KernelSpace(pae_tables(lowmem_mb=8), PDPT, PAE)
    assert lowmem_size(space) == 8 << 20
    space.set_lowmem(lowmem_size(space))
    assert space.direct_phys(PAGE_OFFSET + (8 << 20) - 1) == (8 << 20) - 1
    assert space.direct_phys(0xF8000010) is None        # vmalloc is walked, never computed
    assert space.read(0xF8000010, 8) == b"vmalloc!"


def test_a_missing_level_is_named() -> None:
    space = I386KernelSpace(pae_tables(), PDPT, PAE)
    with pytest.raises(FaultError, match="no PMD entry"):
        space.read(0xE0000000, 4)
    with pytest.raises(FaultError, match="no PDPT entry"):
        space.read(0x40000000, 4)


def test_vtop_shows_each_level_with_its_flags() -> None:
    space = I386KernelSpace(pae_tables(), PDPT, PAE)
    walk = paging.translate(space, 0xF8000010)
    assert walk.phys == 0x123010 and walk.page_size == 4096 and walk.root_level == "PDPT"
    assert [e.level for e in walk.entries] == ["PDPT", "PMD", "PTE"]
    assert walk.entries[-1].flags == "PRESENT|RW|NX"
    big = paging.translate(space, PAGE_OFFSET + 0x300000)
    assert big.page_size == 2 << 20 and "PSE" in big.entries[-1].flags
    missing = paging.translate(space, 0xE0000000)
    assert missing.phys is None and "no PMD entry" in missing.error
    assert [e.level for e in missing.entries] == ["PDPT", "PMD"]


def test_two_level_paging_with_4m_pages() -> None:
    phys = PagesPhys()
    pgd = 0x1000
    put(phys, pgd + 4 * (PAGE_OFFSET >> 22), struct.pack("<I", 0 | PRESENT_RW | PSE))
    put(phys, pgd + 4 * (0xF8000000 >> 22), struct.pack("<I", 0x2000 | PRESENT_RW))
    put(phys, 0x2000 + 4 * ((0xF8001000 >> 12) & 1023), struct.pack("<I", 0x5000 | PRESENT_RW))
    space = I386KernelSpace(phys, pgd, TWO_LEVEL)
    assert space.vtop(PAGE_OFFSET + 0x3FFFFF)[0] == 0x3FFFFF
    assert space.vtop(0xF8001234)[0] == 0x5234
    assert [e.level for e in space.vtop(0xF8001234)[1]] == ["PGD", "PTE"]
    assert lowmem_size(space) == 4 << 20


def test_addresses_beyond_32_bits_fault() -> None:
    space = I386KernelSpace(pae_tables(), PDPT, PAE)
    with pytest.raises(FaultError):
        space.vtop(1 << 32)
    walk = paging.translate(space, 1 << 32)
    assert walk.phys is None and walk.entries == [] and "not a 32-bit address" in walk.error
