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


# -- synthetic cores: layouts no fixture covers (aarch64, partial file-backed segments) ---------

def build_core(machine: int, loads: list[tuple[int, bytes, int, int]],
               notes: list[tuple[int, bytes]], endian: str = "<") -> bytes:
    """A minimal ELF64 ET_CORE: loads are (vaddr, file bytes, memsz, p_flags); notes are CORE (type, desc)."""
    import struct

    def note(ntype: int, desc: bytes) -> bytes:
        pad = (-len(desc)) % 4
        return struct.pack(endian + "III", 5, len(desc), ntype) + b"CORE\0\0\0\0" + desc + bytes(pad)

    blob = b"".join(note(t, d) for t, d in notes)
    phnum = 1 + len(loads)
    off = 64 + 56 * phnum
    phdrs = [struct.pack(endian + "IIQQQQQQ", 4, 0, off, 0, 0, len(blob), 0, 4)]
    body = blob
    off += len(blob)
    for vaddr, data, memsz, flags in loads:
        phdrs.append(struct.pack(endian + "IIQQQQQQ", 1, flags, off, vaddr, 0, len(data), memsz, 0x1000))
        body += data
        off += len(data)
    ident = b"\x7fELF\x02" + (b"\x01" if endian == "<" else b"\x02") + b"\x01" + bytes(9)
    ehdr = ident + struct.pack(endian + "HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, phnum, 64, 0, 0)
    return ehdr + b"".join(phdrs) + body


def _aarch64_prstatus(pid: int, regs: list[int]) -> bytes:
    import struct

    head = struct.pack("<iiihh", 11, 1, 0, 11, 0) + bytes(16)          # siginfo, cursig, sigpend/hold
    head += struct.pack("<iiii", pid, 1, pid, pid) + bytes(64)          # pids, times
    return head + struct.pack("<34Q", *regs) + bytes(8)


def test_synthetic_aarch64_threads_and_registers(tmp_path: Path) -> None:
    import struct

    regs1 = [0x1000 + i for i in range(31)] + [0x7FFF0000, 0x400123, 0x60000000]
    regs2 = [0x2000 + i for i in range(31)] + [0x7FFE0000, 0x400456, 0x20000000]
    psinfo = bytes([0, ord("R"), 0, 0]) + bytes(4) + bytes(8) + struct.pack("<IIiiii", 1000, 100, 77, 1, 77, 77)
    psinfo += b"prog".ljust(16, b"\0") + b"prog --flag".ljust(80, b"\0")
    siginfo = struct.pack("<iiiiQ", 11, 0, 2, 0, 0xDEAD0) + bytes(104)
    data = bytes(range(256)) * 16
    core = tmp_path / "a64.core"
    core.write_bytes(build_core(183, [(0x400000, data, 0x2000, 5)],
                                [(1, _aarch64_prstatus(77, regs1)), (1, _aarch64_prstatus(78, regs2)),
                                 (3, psinfo), (0x53494749, siginfo)]))
    target = open_target(str(core), config=Config())
    assert target.arch.name == "aarch64"
    t1, t2 = target.threads()
    assert (t1.id, t2.id) == (77, 78)
    assert t1.registers["x0"] == 0x1000 and t1.registers["x30"] == 0x1000 + 30
    assert (t2.registers["sp"], t2.registers["pc"], t2.registers["pstate"]) == (0x7FFE0000, 0x400456, 0x20000000)
    rows = dict(target.os.status())
    assert rows["program"] == "prog" and rows["arguments"] == "prog --flag" and rows["pid"] == "77"
    assert rows["signal"] == "SIGSEGV (11), code SEGV_ACCERR (2)" and rows["fault address"] == "0xdead0"
    assert target.os.psinfo.uid == 1000 and target.os.psinfo.gid == 100
    # p_memsz beyond p_filesz with no file behind it reads as zeros
    assert target.memory.read(0x400FFE, 4) == bytes([254, 255, 0, 0])
    assert target.memory.read(0x401800, 16) == bytes(16)


def test_synthetic_left_out_file_bytes_and_short_file(tmp_path: Path) -> None:
    """NT_FILE page offsets are in pages; bytes past the mapped file's end are zeros."""
    import struct

    mapped = tmp_path / "lib.so"
    mapped.write_bytes(b"A" * 0x1000 + b"B" * 0x800)  # 1.5 pages
    nt_file = struct.pack("<QQ", 1, 0x1000) + struct.pack("<QQQ", 0x10000, 0x12000, 1)
    nt_file += b"/nonexistent/dir/lib.so\0"
    prs = _aarch64_prstatus(5, [0] * 34)
    core = tmp_path / "f.core"
    core.write_bytes(build_core(183, [(0x10000, b"", 0x2000, 5)], [(1, prs), (0x46494C45, nt_file)]))
    target = open_target(str(core), config=Config())
    mem = target.memory
    assert mem.read(0x10000, 4) == b"BBBB"                    # file page 1
    assert mem.read(0x107FE, 4) == b"BB\0\0"                 # the file ends mid-page
    assert mem.read(0x11000, 8) == bytes(8)
    (m,) = target.os.mappings()
    assert (m.start, m.end, m.offset, m.in_dump, m.perms) == (0x10000, 0x12000, 0x1000, False, "r-x")
    mapped.unlink()
    target2 = open_target(str(core), config=Config())
    with pytest.raises(FaultError, match="mapped from lib.so which was not found"):
        target2.memory.read(0x10000, 4)


@pytest.mark.parametrize("name", CORES)
def test_dollar_r_shows_expected_registers(user_cores: Path, expected: dict, name: str) -> None:
    import io

    from pmdb.session import Session

    target = _open(user_cores, name)
    out = io.StringIO()
    session = Session(target, stdout=out, stderr=io.StringIO())
    assert session.run_line("$r")
    shown = {m.group(1): int(m.group(2), 16) for m in re.finditer(r"%(\w+)\s*= 0x([0-9a-f]+)", out.getvalue())}
    assert set(shown) == set(target.arch.regs)
    for reg, value in expected[name]["crash_registers"].items():
        if reg != "signo":
            assert shown[target.arch.reg_name(reg)] == int(value, 16), reg
    # the pc line names the function the process crashed in (expected.json: crash)
    crash = int(expected[name]["symbols"]["crash"], 16)
    pc = shown[target.arch.pc]
    assert re.search(rf"%{target.arch.pc}\s*= 0x0*{pc:x} crash\+0x{pc - crash:x}\b", out.getvalue()) or pc == crash
