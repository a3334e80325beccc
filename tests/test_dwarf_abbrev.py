"""Abbrev tables read without construct (pmdb.types.dwarf_abbrev) against pyelftools' own
parse of the same tables: the vmlinux's units, the fixtures' user programs (x86-64, i386,
big-endian sparc64) and a program gcc builds now (DWARF 5, whose implicit constants live in
the table itself)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from elftools.dwarf.abbrevtable import AbbrevTable

from pmdb.errors import FormatError
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf_abbrev import FastAbbrevDWARFInfo, read_table
from pmdb.types.dwarf_scan import sleb, units
from tests import kernel_truth as kt
from tests.conftest import USER_CORES, need_fixture

RELEASE = "6.1.0-56-amd64"


def _plain(table: dict[int, Any]) -> dict[int, tuple[Any, ...]]:
    """A table as plain values: code -> (tag, children, ((name, form, value), ...))."""
    return {code: (d["tag"], d["children_flag"], d.has_children(),
                   tuple((s.name, s.form, getattr(s, "value", None)) for s in d["attr_spec"]))
            for code, d in table.items()}


def _compare(debug: DebugFile, most: int) -> tuple[int, int]:
    """Every distinct abbrev table of the first ``most`` units read both ways must agree;
    (tables compared, implicit constants among them)."""
    dwarf = debug.dwarf()
    assert isinstance(dwarf, FastAbbrevDWARFInfo)
    start, size = debug.sections[".debug_abbrev"]
    base, info_size = debug.sections[".debug_info"]
    offsets = dict.fromkeys(u.abbrev_offset for u in itertools.islice(
        units(debug.mm, base, info_size, debug.little), most))
    consts = 0
    for offset in offsets:
        theirs = AbbrevTable(dwarf.structs, dwarf.debug_abbrev_sec.stream, offset)   # type: ignore[union-attr]
        mine = read_table(debug.mm, start + offset, start + size)
        assert _plain(mine) == _plain(theirs._abbrev_map)
        assert dwarf.get_abbrev_table(offset).get_abbrev(1)["tag"] == theirs.get_abbrev(1)["tag"]
        consts += sum(1 for d in mine.values() for s in d["attr_spec"] if s.form == "DW_FORM_implicit_const")
    return len(offsets), consts


@pytest.mark.parametrize("program", ["hashcrash-x86_64-O2", "hashcrash-i386-O2", "hashcrash-sparc64-O2"])
def test_user_programs_tables_read_as_pyelftools_reads_them(program: str) -> None:
    tables, _ = _compare(DebugFile(str(need_fixture(USER_CORES / program))), 1 << 20)
    assert tables >= 1


def test_vmlinux_tables_read_as_pyelftools_reads_them() -> None:
    tables, _ = _compare(DebugFile(str(kt.need_dbg_vmlinux(RELEASE))), 60)
    assert tables >= 30


def test_dwarf5_implicit_constants(tmp_path: Path) -> None:
    """gcc 11+ writes DWARF 5 with DW_FORM_implicit_const (a member's decl_file): its
    value, signed, comes from the table."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc here")
    src = tmp_path / "prog.c"
    src.write_text("struct point { int x, y; long z; signed char c[3]; };\n"
                   "struct point origin = { -1, -2, -3, { 1, 2, 3 } };\n"
                   "int main(void) { return origin.x; }\n")
    subprocess.run(["gcc", "-g", "-gdwarf-5", "-O0", "-o", str(tmp_path / "prog"), str(src)], check=True)
    tables, consts = _compare(DebugFile(str(tmp_path / "prog")), 1 << 20)
    assert tables >= 1 and consts >= 1


def test_signed_leb128() -> None:
    assert sleb(b"\x7f", 0, 1) == (-1, 1)
    assert sleb(b"\x80\x7f", 0, 2) == (-128, 2)
    assert sleb(b"\x3f", 0, 1) == (63, 1)
    assert sleb(b"\xc0\x00", 0, 2) == (64, 2)


def test_a_table_cut_short_is_one_error() -> None:
    """A table that runs past its section (a truncated or damaged .debug_abbrev) is a
    FormatError, never an IndexError or a loop."""
    table = bytes([1, 0x13, 1, 0x03, 0x08, 0x0B, 0x0B, 0, 0, 0])     # code 1: struct, name, size
    assert read_table(table, 0, len(table))[1]["tag"] == "DW_TAG_structure_type"
    for cut in range(len(table) - 1):
        with pytest.raises(FormatError):
            read_table(table[:cut], 0, cut)
