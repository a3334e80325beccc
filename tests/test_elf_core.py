"""ELF user cores from ../shared/fixtures/user-cores, checked against expected.json and the program's output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.dumps.detect import open_dump
from pmdb.dumps.elf import ElfCore
from pmdb.errors import FaultError
from pmdb.opener import open_target
from pmdb.target import Target

CORES = ["hashcrash-x86_64-O2.core", "hashcrash-x86_64-O2.gdb.core", "hashcrash-i386-O2.core",
         "hashcrash-sparc64-O2.core", "hashcrash-sparc64-O0.core"]


@pytest.fixture(scope="module")
def expected(user_cores: Path) -> dict:
    return json.loads((user_cores / "expected.json").read_text())


def _open(user_cores: Path, name: str) -> Target:
    return open_target(str(user_cores / name), config=Config())


def _out_values(user_cores: Path, exe: str) -> dict[str, int]:
    """Values the program printed: lookup vals by key, chain_sum."""
    text = (user_cores / f"{exe}.out").read_text()
    vals = {int(k): int(v) for k, v in re.findall(r"key=(\d+)\) = \S+ val=(\d+)", text)}
    return {"vals": vals, "sum": int(re.search(r"chain_sum\(.*\) = (\d+)", text).group(1))}


@pytest.mark.parametrize("name", CORES)
def test_crash_registers_match_expected(user_cores: Path, expected: dict, name: str) -> None:
    target = _open(user_cores, name)
    regs = target.registers()
    want = expected[name]["crash_registers"]
    for reg, value in want.items():
        if reg == "signo":
            prstatus_signo = target.os.prstatus[0].signo
            assert prstatus_signo == value
            continue
        assert regs[target.arch.reg_name(reg)] == int(value, 16), reg
    assert target.arch.name == expected[name]["arch"]
    assert len(target.threads()) == 1


@pytest.mark.parametrize("name", CORES)
def test_globals_read_back(user_cores: Path, expected: dict, name: str) -> None:
    target = _open(user_cores, name)
    exp = expected[name]
    syms = {k: int(v, 16) for k, v in exp["symbols"].items()}
    out = _out_values(user_cores, exp["executable"])
    ptr, word = target.arch.ptr_size, 8
    mem = target.memory
    found = [mem.read_int(syms["g_found"] + i * ptr, ptr) for i in range(4)]
    lookups = [c for c in exp["calls"] if c["function"] == "lookup"]
    assert found == [int(c["result"], 16) for c in lookups]
    vals = [mem.read_int(syms["g_vals"] + i * word, word) for i in range(4)]
    keys = [c["args"][2] for c in lookups]
    assert vals[:3] == [out["vals"][k] for k in keys[:3]]
    assert vals[3] == 2**64 - 1
    g_sum = mem.read_int(syms["g_sum"], word)
    chain = next(c for c in exp["calls"] if c["function"] == "chain_sum")
    assert g_sum == chain["result"]
    if ptr == 8:  # the 32-bit program prints its truncated unsigned long
        assert g_sum == out["sum"]
    # the symbol table agrees with expected.json
    for sym, addr in syms.items():
        hit = target.symbols.lookup(sym)
        assert hit is not None and hit.addr == addr, sym


def test_left_out_text_comes_from_the_executable(user_cores: Path, expected: dict) -> None:
    """The kernel core has no bytes for the r-x PT_LOAD; they must equal the executable's."""
    from elftools.elf.elffile import ELFFile

    name = "hashcrash-x86_64-O2.core"
    core = open_dump(str(user_cores / name))
    assert isinstance(core, ElfCore)
    addr = int(expected[name]["symbols"]["lookup"], 16)
    text = next(ph for ph in core.loads if ph.vaddr <= addr < ph.vaddr + ph.memsz)
    assert text.filesz == 0 and text.perms == "r-x"
    with open(user_cores / expected[name]["executable"], "rb") as f:
        elf = ELFFile(f)
        sec = elf.get_section_by_name(".text")
        want = sec.data()[addr - sec["sh_addr"]:addr - sec["sh_addr"] + 64]
    assert core.space().read(addr, 64) == want


def test_left_out_text_without_the_file_faults_naming_it(user_cores: Path, tmp_path: Path,
                                                         expected: dict) -> None:
    name = "hashcrash-x86_64-O2.core"
    (tmp_path / name).symlink_to(user_cores / name)
    core = open_dump(str(tmp_path / name))
    addr = int(expected[name]["symbols"]["lookup"], 16)
    with pytest.raises(FaultError) as err:
        core.space().read(addr, 16)
    assert err.value.address == addr
    assert "hashcrash-x86_64-O2 which was not found" in str(err.value)
    # data in the core still reads
    g_sum = int(expected[name]["symbols"]["g_sum"], 16)
    assert core.space().u64(g_sum) == 4722460501584038224


def test_sparc64_is_big_endian(user_cores: Path, expected: dict) -> None:
    name = "hashcrash-sparc64-O2.core"
    target = _open(user_cores, name)
    assert target.memory.byteorder == "big"
    tunable = int(expected[name]["symbols"]["tunable"], 16)
    assert target.memory.read(tunable, 8) == bytes.fromhex("9E3779B97F4A7C15")
    assert target.memory.u64(tunable) == 0x9E3779B97F4A7C15
    g_table = int(expected[name]["symbols"]["g_table"], 16)
    assert target.memory.ptr(g_table) == int(expected[name]["calls"][0]["args"][0], 16)


@pytest.mark.parametrize("name", CORES)
def test_status_names_program_signal_and_fault(user_cores: Path, expected: dict, name: str) -> None:
    target = _open(user_cores, name)
    rows = dict(target.os.status())
    exe = expected[name]["executable"]
    assert exe.startswith(rows["program"])          # comm is cut at 15 characters
    assert exe in rows["arguments"]
    assert rows["signal"].startswith("SIGSEGV (11)")
    assert rows["threads"] == "1"
    # crash() stores through (table == NULL), i.e. to address 1, on every arch
    if "fault address" in rows:
        assert rows["fault address"] == "0x1"


def test_mappings_mark_left_out_segments(user_cores: Path, expected: dict) -> None:
    target = _open(user_cores, "hashcrash-x86_64-O2.core")
    addr = int(expected["hashcrash-x86_64-O2.core"]["symbols"]["lookup"], 16)
    maps = target.os.mappings()
    text = next(m for m in maps if m.start <= addr < m.end)
    assert text.perms == "r-x" and not text.in_dump and text.path.endswith("hashcrash-x86_64-O2")
    data = next(m for m in maps if m.start <= int(expected["hashcrash-x86_64-O2.core"]["symbols"]["g_sum"], 16) < m.end)
    assert data.in_dump and data.perms == "rw-"
