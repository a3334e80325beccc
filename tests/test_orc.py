"""ORC tables read from the dump: entry layouts, vmlinux's table, a module's table.

Oracles: the module as built (crashdrv.ko's own .orc_unwind sections and
their relocations, read with pyelftools), the real System.map (function
starts, where the x86-64 ABI fixes the frame: CFA = rsp + 8), and a linear
search over the table for the lookup.
"""

from __future__ import annotations

import random
import struct

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from pmdb.os.linux.arch.x86_64 import orc
from pmdb.os.linux.arch.x86_64.orc import OrcEntry, decode_entry, orc_version
from tests.conftest import need_fixture
from tests.linux_vmcore import KASLR, system_map
from tests.test_kernel_unwind import World, kaslr_world


@pytest.mark.parametrize("release,version", [
    ("4.14.0", 1), ("5.10.0-21-amd64", 1), ("6.1.0-56-amd64", 1), ("6.2.16", 1),
    ("6.3.0-rc1", 2), ("6.4.0", 3), ("6.12.9-arch1", 3), ("10.0", 3), ("", 1), ("garbage", 1)])
def test_orc_version(release: str, version: int) -> None:
    assert orc_version(release) == version


def _bits(sp_reg: int, bp_reg: int, kind: int, flag_at: dict[int, int]) -> int:
    bits = sp_reg | bp_reg << 4 | kind << 8
    for at, value in flag_at.items():
        bits |= value << at
    return bits


def test_decode_entry_layouts() -> None:
    """The same frames encoded in the three layouts decode to the same normalized entries."""
    call = OrcEntry(8, -16, orc.REG_SP, orc.REG_PREV_SP, orc.TYPE_CALL)
    regs = OrcEntry(0, 0, orc.REG_SP, orc.REG_UNDEFINED, orc.TYPE_REGS)
    end = OrcEntry(0, 0, orc.REG_UNDEFINED, orc.REG_UNDEFINED, orc.TYPE_END)
    undefined = OrcEntry(0, 0, orc.REG_UNDEFINED, orc.REG_UNDEFINED, orc.TYPE_UNDEFINED)
    cases = {  # version: (call, regs, end-of-stack, undefined)
        1: (_bits(5, 1, 0, {}), _bits(5, 0, 1, {}), _bits(0, 0, 0, {10: 1}), _bits(0, 0, 0, {})),
        2: (_bits(5, 1, 0, {}), _bits(5, 0, 1, {}), _bits(0, 0, 0, {11: 1}), _bits(0, 0, 0, {})),
        3: (_bits(5, 1, 2, {}), _bits(5, 0, 3, {}), _bits(0, 0, 1, {}), _bits(0, 0, 0, {})),
    }
    for version, (b_call, b_regs, b_end, b_undef) in cases.items():
        assert decode_entry(8, -16, b_call, version) == call
        assert decode_entry(0, 0, b_regs, version) == regs
        assert decode_entry(0, 0, b_end, version) == end
        assert decode_entry(0, 0, b_undef, version) == undefined
    # 'signal' (6.3+): bit 10 in v2, bit 11 in v3; v1 has no such bit (10 is 'end')
    assert decode_entry(8, 0, _bits(5, 0, 0, {10: 1}), 2).signal
    assert decode_entry(8, 0, _bits(5, 0, 2, {11: 1}), 3).signal
    assert not decode_entry(8, 0, _bits(5, 0, 0, {10: 1}), 1).signal


@pytest.fixture(scope="module")
def world() -> World:
    return kaslr_world("dump.202611221942")


def test_vmlinux_table_shape(world: World) -> None:
    table = world.unwinder.orc.tables[0]
    start, stop = world.lookup("__start_orc_unwind"), world.lookup("__stop_orc_unwind")
    assert start is not None and stop is not None
    assert table.name == "vmlinux" and table.entries == start
    assert table.count == (stop - start) // orc.ENTRY_SIZE > 100000
    ips = [table.ip_at(i) for i in range(table.count)]
    assert ips == sorted(ips)
    assert table.text[0] == (world.lookup("_stext"), world.lookup("_etext"))
    assert ips[0] >= table.text[0][0]


def test_function_starts_are_call_frames(world: World) -> None:
    """At the first byte of a C function the return address is all there is: CFA = rsp + 8.
    Function starts come from the real System.map, shifted by the dump's KASLR offset; a
    ``.cold`` part continues its parent's frame, and entry assembly has its own hints."""
    finder = world.unwinder.orc
    shift = world.kernel.info.kernel_offset
    funcs = [addr + shift for addr, letter, name in system_map()
             if letter in "Tt" and ".cold" not in name
             and not name.startswith(("__pfx", "asm_", "entry_", "__x86_", "_"))]
    entry = OrcEntry(8, 0, orc.REG_SP, orc.REG_UNDEFINED, orc.TYPE_CALL)
    found = [finder.find(a) for a in funcs if finder.is_text(a)]
    assert len(found) > 20000
    same = sum(1 for e in found if e is not None and e == entry)
    assert same / len(found) > 0.99, f"{same} of {len(found)}"


def test_lookup_matches_a_linear_search(world: World) -> None:
    """find() against one forward merge of sorted probe addresses through the whole table."""
    table = world.unwinder.orc.tables[0]
    lo, hi = table.text[0]
    rng = random.Random(4)
    probes = sorted([lo, hi - 1] + [rng.randrange(lo, hi) for _ in range(500)])
    i = 0
    for ip in probes:
        while i + 1 < table.count and table.ip_at(i + 1) <= ip:
            i += 1
        sp_off, bp_off, bits = struct.unpack_from("<hhH", table._raw, orc.ENTRY_SIZE * i)
        assert table.find(ip) == decode_entry(sp_off, bp_off, bits, 1), hex(ip)


def test_module_table_is_the_modules_own(world: World) -> None:
    """crashdrv's in-memory table holds the .ko's .orc_unwind entries at the addresses its
    .rela.orc_unwind_ip relocations name, each code section moved to where it was loaded
    (found through a function of that section in the module's kallsyms)."""
    table = next(t for t in world.unwinder.orc.tables if t.name == "crashdrv")
    symbols = world.kernel.km.symbols
    with need_fixture(KASLR / "crashdrv.ko").open("rb") as f:
        elf = ELFFile(f)
        orc_section = elf.get_section_by_name(".orc_unwind")
        rela = elf.get_section_by_name(".rela.orc_unwind_ip")
        assert orc_section is not None and isinstance(rela, RelocationSection)
        raw = orc_section.data()
        symtab = elf.get_section(rela["sh_link"])
        assert isinstance(symtab, SymbolTableSection)
        bases = {}
        for sym in symtab.iter_symbols():
            loaded = symbols.lookup(sym.name, "crashdrv") if sym["st_info"]["type"] == "STT_FUNC" else None
            if loaded is not None:
                bases[sym["st_shndx"]] = loaded.addr - sym["st_value"]
        expected = {}
        for r in rela.iter_relocations():
            section = symtab.get_symbol(r["r_info_sym"])["st_shndx"]
            if section in bases:          # not the init code, freed after loading
                i = r["r_offset"] // 4
                sp_off, bp_off, bits = struct.unpack_from("<hhH", raw, orc.ENTRY_SIZE * i)
                entry = decode_entry(sp_off, bp_off, bits, 1)
                expected[bases[section] + r["r_addend"]] = entry
    assert table.count == len(raw) // orc.ENTRY_SIZE and len(bases) >= 2 and len(expected) >= 20
    in_memory = {table.ip_at(i) for i in range(table.count)}
    for ip, entry in expected.items():
        assert ip in in_memory and table.find(ip) == entry


def test_register_numbering_is_read_off_the_entries() -> None:
    """Debian's 7.2 renumbered ORC's base registers (SP 5 -> 3, PREV_SP 1 -> 8): a table
    whose CALL entries are mostly based on 3 is read with the new numbers."""
    from pmdb.os.linux.arch.x86_64.orc import (
        REG_PREV_SP,
        REG_SP,
        REGS_ORIGINAL,
        REGS_RENUMBERED,
        TYPE_CALL,
        decode_entry,
        register_numbering,
    )

    old = b"".join(struct.pack("<hhH", 8, 0, 5 | 2 << 8) for _ in range(9)) + struct.pack("<hhH", 0, 0, 3)
    new = b"".join(struct.pack("<hhH", 16, -16, 3 | 8 << 4 | 2 << 8) for _ in range(9))
    assert register_numbering(old) is REGS_ORIGINAL
    assert register_numbering(new) is REGS_RENUMBERED
    entry = decode_entry(16, -16, 3 | 8 << 4 | 2 << 8, 3, REGS_RENUMBERED)
    assert (entry.sp_reg, entry.bp_reg, entry.type) == (REG_SP, REG_PREV_SP, TYPE_CALL)
