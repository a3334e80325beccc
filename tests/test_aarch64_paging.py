"""arm64 kernel address translation and frame-record details, on tables made by a small builder.

The real-dump checks (walks against the fast paths, ::vtop of a symbol) are in
tests/test_arm64_kernel.py; these cover the edges a dump may not show: 3- and
4-level walks, 1 GB and 2 MB blocks, invalid levels, the linear-map and image
rules, descriptor names and PAC stripping.
"""

from __future__ import annotations

import pytest

from pmdb.errors import FaultError
from pmdb.memory.aarch64 import MASK64, Arm64KernelSpace, levels_for
from pmdb.os.linux.arch.aarch64.paging import entry_flags, translate
from pmdb.os.linux.arch.aarch64.unwind import _ENTRY, strip_pac
from tests.test_x86_64_paging import PagesPhys

TABLE = 0x3
PAGE = 0x3 | 1 << 10 | 3 << 8          # valid, page, AF, inner shareable
BLOCK = 0x1 | 1 << 10
VOFF = 0xFFFF7FFF00000000               # kimage_voffset of the builder's kernel


def _space(va_bits: int = 48) -> tuple[Arm64KernelSpace, PagesPhys]:
    phys = PagesPhys()
    phys.page(0x40000000)
    return Arm64KernelSpace(phys, 0x40000000, va_bits, VOFF, 0x40000000), phys


def _set(phys: PagesPhys, table: int, index: int, value: int) -> None:
    phys.page(table)[index * 8:index * 8 + 8] = value.to_bytes(8, "little")


def _map4(phys: PagesPhys, va: int, frame: int) -> None:
    tables = (0x40000000, 0x40001000, 0x40002000, 0x40003000)
    for i, shift in enumerate((39, 30, 21)):
        _set(phys, tables[i], va >> shift & 0x1FF, tables[i + 1] | TABLE)
    _set(phys, tables[3], va >> 12 & 0x1FF, frame | PAGE)


def test_levels_follow_va_bits() -> None:
    assert [(lv.name, lv.shift, lv.bits) for lv in levels_for(48)] == [
        ("PGD", 39, 9), ("PUD", 30, 9), ("PMD", 21, 9), ("PTE", 12, 9)]
    assert [(lv.name, lv.shift, lv.bits) for lv in levels_for(39)] == [
        ("PGD", 30, 9), ("PMD", 21, 9), ("PTE", 12, 9)]
    assert [lv.bits for lv in levels_for(42)] == [3, 9, 9, 9]
    assert [(lv.name, lv.shift, lv.bits) for lv in levels_for(52)] == [
        ("PGD", 48, 4), ("P4D", 39, 9), ("PUD", 30, 9), ("PMD", 21, 9), ("PTE", 12, 9)]
    with pytest.raises(ValueError):
        levels_for(53)


def test_four_level_page_walk_and_cache() -> None:
    space, phys = _space()
    va = 0xFFFF800008123000
    _map4(phys, va, 0x41234000)
    phys.page(0x41234000)[0x10:0x14] = b"arm!"
    assert space.read(va + 0x10, 4) == b"arm!"
    pa, entries = space.vtop(va + 0x10)
    assert pa == 0x41234010
    assert [e.level for e in entries] == ["PGD", "PUD", "PMD", "PTE"]
    t = translate(space, va + 0x10)
    assert t.phys == 0x41234010 and t.page_size == 4096
    assert t.entries[-1].flags == "VALID|PAGE|AF|AP=RW|SH=INNER|AttrIndx=0"
    assert t.entries[0].flags == "VALID|TABLE"


def test_block_mappings() -> None:
    space, phys = _space()
    va = 0xFFFF800040000000
    _set(phys, 0x40000000, va >> 39 & 0x1FF, 0x40001000 | TABLE)
    _set(phys, 0x40001000, va >> 30 & 0x1FF, 0x80000000 | BLOCK | 1 << 53 | 1 << 54)
    t = translate(space, va + 0x123456)
    assert t.phys == 0x80123456 and t.page_size == 1 << 30
    assert t.entries[-1].flags == "VALID|BLOCK|AF|AP=RW|PXN|UXN|AttrIndx=0"
    va2 = 0xFFFF800080200000
    _set(phys, 0x40001000, va2 >> 30 & 0x1FF, 0x40002000 | TABLE)
    _set(phys, 0x40002000, va2 >> 21 & 0x1FF, 0x90000000 | BLOCK)
    assert space.vtop(va2 + 5)[0] == 0x90000005
    assert translate(space, va2).page_size == 1 << 21


def test_missing_levels_are_named() -> None:
    space, phys = _space()
    va = 0xFFFF800008123000
    _set(phys, 0x40000000, va >> 39 & 0x1FF, 0x40001000 | TABLE)
    t = translate(space, va)
    assert t.phys is None and "PUD table at physical 0x40001000 is not in the dump" in t.error
    phys.page(0x40001000)
    t = translate(space, va)
    assert "no PUD entry" in t.error and [e.level for e in t.entries] == ["PGD", "PUD"]
    with pytest.raises(FaultError, match="no PUD entry"):
        space.read(va, 8)
    with pytest.raises(FaultError, match="48-bit"):
        space.read(0x00F0000000000000, 8)


def test_three_level_walk() -> None:
    space, phys = _space(39)
    va = 0xFFFFFFC008123000
    _set(phys, 0x40000000, va >> 30 & 0x1FF, 0x40001000 | TABLE)
    _set(phys, 0x40001000, va >> 21 & 0x1FF, 0x40002000 | TABLE)
    _set(phys, 0x40002000, va >> 12 & 0x1FF, 0x45000000 | PAGE)
    phys.page(0x45000000)
    assert [e.level for e in translate(space, va).entries] == ["PGD", "PMD", "PTE"]
    assert space.vtop(va + 8)[0] == 0x45000008


def test_fast_paths() -> None:
    space, phys = _space()
    assert space.page_offset == 0xFFFF000000000000
    assert space.linear_phys(0xFFFF000000001000) == 0x40001000
    assert space.linear_phys(0xFFFF800000000000) is None
    phys.page(0x40005000)[:3] = b"lin"
    assert space.read(0xFFFF000000005000, 3) == b"lin"
    image = (0x40005000 + VOFF) & MASK64
    assert space.image_phys(image) is None          # off until _text/_end are known
    space.set_image(image, image + 0x1000)
    assert space.read(image, 3) == b"lin"


def test_descriptor_names() -> None:
    assert entry_flags(0, False) == "invalid"
    assert entry_flags(0x3 | 1 << 59, False) == "VALID|TABLE|PXNTable"
    assert "AP=RO" in entry_flags(PAGE | 2 << 6 | 1 << 11, True)
    assert "nG" in entry_flags(PAGE | 1 << 11, True)


def test_pac_stripping() -> None:
    mask = MASK64 & ~((1 << 48) - 1)        # KERNELPACMASK with 48-bit VAs and no TBI
    assert strip_pac(0x3AC7800008123456, mask) == 0xFFFF800008123456
    assert strip_pac(0x00BF800008123456, mask) == 0xFFFF800008123456
    assert strip_pac(0xFFFF800008123456, mask) == 0xFFFF800008123456


def test_entry_vector_names() -> None:
    for name in ("el1h_64_irq", "el0t_64_sync", "el0t_32_irq", "el1_irq", "el0_sync_compat", "el1h_64_error"):
        assert _ENTRY.match(name), name
    for name in ("el1h_64_irq_handler", "el0_svc", "call_on_irq_stack", "elf_core_dump"):
        assert not _ENTRY.match(name), name
