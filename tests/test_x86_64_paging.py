"""x86-64 kernel address translation.

Unit: 4- and 5-level walks over page tables made by a small builder. Real:
the KASLR fixture, checked against its README, crash's ``rd`` and the
page tables themselves (fast paths and walks must agree both ways).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace, Chunk
from pmdb.memory.x86_64 import LEVELS_4, LEVELS_5, START_KERNEL_MAP, KernelSpace, canonical
from tests.linux_vmcore import (
    README,
    Kernel,
    crash_sections,
)

PRESENT_RW = 0x3
PSE = 0x80
NX = 1 << 63


class PagesPhys(AddressSpace):
    """Physical memory made of 4K pages in a dict; everything else is a hole."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: dict[int, bytearray] = {}

    def page(self, frame: int) -> bytearray:
        return self.pages.setdefault(frame, bytearray(4096))

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        out = []
        while n > 0:
            frame, off = addr & ~0xFFF, addr & 0xFFF
            if frame not in self.pages:
                raise FaultError(addr, n, "hole")
            take = min(n, 4096 - off)
            out.append(Chunk(addr, take, self, addr))
            addr += take
            n -= take
        return out

    def read_at(self, offset: int, n: int) -> bytes:
        frame, off = offset & ~0xFFF, offset & 0xFFF
        return bytes(self.pages[frame][off:off + n])


class TableBuilder:
    """Builds page tables in a PagesPhys: ``map(vaddr, paddr, shift)`` for 4K/2M/1G pages."""

    def __init__(self, phys: PagesPhys, levels: tuple, next_table: int = 0x100000) -> None:
        self.phys, self.levels = phys, levels
        self.next = next_table
        self.root = self._alloc()

    def _alloc(self) -> int:
        frame, self.next = self.next, self.next + 0x1000
        self.phys.page(frame)
        return frame

    def _entry(self, table: int, index: int, value: int | None = None) -> int:
        page = self.phys.pages[table]
        if value is not None:
            struct.pack_into("<Q", page, index * 8, value)
        return struct.unpack_from("<Q", page, index * 8)[0]

    def map(self, vaddr: int, paddr: int, shift: int = 12, flags: int = PRESENT_RW) -> None:
        table = self.root
        for level in self.levels:
            index = level.index(vaddr)
            if level.shift == shift:
                self._entry(table, index, paddr | flags | (PSE if shift > 12 else 0))
                return
            entry = self._entry(table, index)
            if not entry & 1:
                entry = self._entry(table, index, self._alloc() | PRESENT_RW)
            table = entry & 0x000FFFFFFFFFF000


@pytest.mark.parametrize("levels", [LEVELS_4, LEVELS_5], ids=["4-level", "5-level"])
def test_synthetic_walks(levels: tuple) -> None:
    phys = PagesPhys()
    tb = TableBuilder(phys, levels)
    five = len(levels) == 5
    high = 0xFF11000000000000 if five else 0xFFFF888000000000
    tb.map(high + 0x5000, 0x7000 | NX)  # NX must not leak into the address
    tb.map(high + 0x40200000, 0x600000, 21)
    tb.map(high + 0x80000000, 0x40000000, 30)
    for frame in (0x7000, 0x600000 + 0x1000 * 0x33, 0x40000000 + 0x123000):
        phys.page(frame)[:8] = frame.to_bytes(8, "little")
    space = KernelSpace(phys, tb.root, 0, five_level=five)
    assert space.u64(high + 0x5000) == 0x7000
    assert space.u64(high + 0x40200000 + 0x33000) == 0x633000
    assert space.u64(high + 0x80000000 + 0x123000) == 0x40123000
    phys_addr, entries = space.vtop(high + 0x80000000 + 0x123456)
    assert phys_addr == 0x40123456
    assert [e.level for e in entries] == [lv.name for lv in levels[:-2]]
    assert entries[-1].value & PSE


@pytest.mark.parametrize("levels", [LEVELS_4, LEVELS_5], ids=["4-level", "5-level"])
def test_faults_name_the_level(levels: tuple) -> None:
    phys = PagesPhys()
    tb = TableBuilder(phys, levels)
    base = 0xFF11000000000000 if len(levels) == 5 else 0xFFFF888000000000
    tb.map(base, 0x7000)
    space = KernelSpace(phys, tb.root, 0, five_level=len(levels) == 5)
    names = [lv.name for lv in levels]
    # the PTE next to a mapped one is empty: the PTE level faults, naming the PMD entry above
    with pytest.raises(FaultError, match=rf"no PTE entry for {base + 0x1000:#x} \(PMD entry 0x"):
        space.read(base + 0x1000, 8)
    # a far address misses at the top level
    with pytest.raises(FaultError, match=f"no {names[0]} entry for"):
        space.read(base ^ (1 << (levels[0].shift + 3)), 8)
    # a mapped page whose frame is absent from the dump reports the virtual address
    with pytest.raises(FaultError, match=rf"at {base:#x}: physical 0x7000: hole"):
        space.read(base, 8)


def test_canonical_and_cache() -> None:
    assert canonical(0xFFFF888000000000, 48) and not canonical(0xFF11000000000000, 48)
    assert canonical(0xFF11000000000000, 57) and canonical(0x7FFFFFFFFFFF, 48)
    phys = PagesPhys()
    tb = TableBuilder(phys, LEVELS_4)
    tb.map(0xFFFFC90000000000, 0x7000)
    phys.page(0x7000)
    space = KernelSpace(phys, tb.root, 0)
    with pytest.raises(FaultError, match="non-canonical"):
        space.read(0x8000000000000000, 1)
    assert space.translate(0xFFFFC90000000010)[0] == 0x7010
    tb.map(0xFFFFC90000000000, 0x9000)  # the tables change under a cached walk ...
    assert space.translate(0xFFFFC90000000010)[0] == 0x7010
    space.flush()  # ... and only a flush sees it
    assert space.translate(0xFFFFC90000000010)[0] == 0x9010


# -- the real KASLR dump -------------------------------------------------------


def test_region_bases_match_readme(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, folder = any_kernel
    lay, facts = kernel.layout, README[folder]
    for name in ("page_offset_base", "vmalloc_base", "vmemmap_base", "kernel_offset", "phys_base"):
        assert getattr(lay, name) == facts[name], name
    # README: the image sits at _stext - __START_KERNEL_map + phys_base (0x5200000 with KASLR)
    stext = kernel.info.symbol("_stext")
    assert kernel.space.vtop(stext)[0] == stext - START_KERNEL_MAP + facts["phys_base"]


def test_init_uts_ns(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, _ = any_kernel
    uts = kernel.info.symbol("init_uts_ns") + kernel.info.offset("uts_namespace", "name")
    assert kernel.space.cstring(uts) == b"Linux"
    assert kernel.space.cstring(uts + 2 * 65) == b"6.1.0-56-amd64"  # release is the 3rd field
    assert kernel.space.cstring(uts + 3 * 65).startswith(b"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2")


def test_image_rule_agrees_with_page_tables(kernel: Kernel) -> None:
    space = kernel.space
    text = [s.addr for s in kernel.symbols if s.addr >= START_KERNEL_MAP]
    rng = random.Random(3)
    walked_ok = 0
    for addr in rng.sample(text, 2000) + [text[0]]:
        try:
            walked, _ = space.vtop(addr)
        except FaultError:
            continue  # freed __init text is unmapped; the rule still computes an address
        walked_ok += 1
        assert walked == space.image_phys(addr), hex(addr)
        assert space.read(addr, 16) == space.phys.read(walked, 16)
    assert walked_ok > 1900


def test_direct_map_agrees_with_page_tables(kernel: Kernel) -> None:
    space, base = kernel.space, kernel.layout.page_offset_base
    rng = random.Random(5)
    # RAM is guest-physical 0 to 0xc000000 (README); walk some of every MB of it
    walked_ok = 0
    for phys in [mb << 20 for mb in range(0xC0)] + [rng.randrange(0xC000000) for _ in range(2000)]:
        assert space.direct_phys(base + phys) == phys
        try:
            walked, _ = space.vtop(base + phys)
        except FaultError:
            continue  # a few pages are unmapped from the direct map (set_memory_np)
        walked_ok += 1
        assert walked == phys
    assert walked_ok > 2000
    # and back: pages the image rule reaches are the same bytes through the direct map
    stext = kernel.info.symbol("_stext")
    assert space.read(stext, 4096) == space.read(base + space.image_phys(stext), 4096)


def test_direct_map_base_from_mem_section_agrees(kernel: Kernel) -> None:
    from pmdb.os.linux.arch.x86_64.layout import _direct_map_from_vmcoreinfo
    assert _direct_map_from_vmcoreinfo(kernel.space, kernel.info) == kernel.layout.page_offset_base


def _crash_rd(lines: list[str]) -> dict[int, int]:
    words = {}
    for line in lines:
        addr, _, rest = line.partition(":")
        hexwords = [w for w in rest.split()[:2] if len(w) == 16]
        for i, word in enumerate(hexwords):
            words[int(addr, 16) + 8 * i] = int(word, 16)
    return words


def test_vmalloc_and_module_reads_match_crash(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, folder = any_kernel
    sections = crash_sections(folder, "rd -64 ")
    assert len(sections) == 2  # the panic stack (vmalloc) and crashdrv_head (module data)
    for lines in sections:
        expected = _crash_rd(lines)
        for addr, word in expected.items():
            assert kernel.space.u64(addr) == word, hex(addr)
        # neither address is in a fast-path region: both were walked
        first = min(expected)
        assert kernel.space.image_phys(first) is None and kernel.space.direct_phys(first) is None


def test_module_text_is_walked(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, folder = any_kernel
    # crash's `sym` put crashdrv_widget_bump+5 at 0x188 into crashdrv's text (README: its base)
    addr = README[folder]["crashdrv"] + 0x188
    phys, entries = kernel.space.vtop(addr)
    assert [e.level for e in entries] == ["PGD", "PUD", "PMD", "PTE"]
    assert kernel.space.read(addr - 5, 8) == kernel.phys.read(phys - 5, 8)
    assert kernel.layout.region(addr) == "module space"


def test_per_cpu_offsets(any_kernel: tuple[Kernel, Path]) -> None:
    kernel, folder = any_kernel
    lay, syms = kernel.layout, kernel.by_name
    assert lay.nr_cpu_ids == 2  # README: 2 vCPUs
    offsets = lay.per_cpu_offsets()
    assert len(set(offsets)) == 2
    for cpu, off in enumerate(offsets):
        assert kernel.space.u32(off + syms["cpu_number"]) == cpu
    # README: the panic task ran on CPU 1
    assert kernel.space.u64(offsets[1] + syms["current_task"]) == README[folder]["panic_task"]


def test_unmapped_kernel_address_faults_with_level(kernel: Kernel) -> None:
    hole = kernel.layout.vmalloc_base - (1 << 36)
    with pytest.raises(FaultError, match=rf"no (PGD|PUD|PMD|PTE) entry for {hole:#x}"):
        kernel.space.read(hole, 8)
    assert kernel.layout.region(kernel.layout.page_offset_base + 5) == "direct map"
