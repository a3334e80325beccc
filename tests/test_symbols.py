"""Symbols of user cores: ::nm against expected.json, libraries against gdb, file finding by build-id.

Oracles: the fixture's expected.json (symbol addresses), gdb (where a shared
library's function lies in the crashed process) and readelf (build-ids).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.errors import FormatError
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.symbols.finder import build_id_in_memory, build_id_of_file, find_file
from pmdb.symbols.objfile import open_elf
from tests.conftest import USER_CORES, need_fixture
from tests.cores import gdb_batch, need_tools

EXPECTED = USER_CORES / "expected.json"
CORES = sorted(json.loads(EXPECTED.read_text())) if EXPECTED.exists() else ["hashcrash-x86_64-O2.core"]
X86_CORE = "hashcrash-x86_64-O2.core"
X86_EXE = "hashcrash-x86_64-O2"


def _run(session: Session, line: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    session.stdout, session.stderr = out, err
    session.run_line(line)
    return out.getvalue(), err.getvalue()


def _nm_table(text: str) -> dict[str, list[int]]:
    """::nm rows as name -> values (a name may be defined in several objects)."""
    rows: dict[str, list[int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) == 5 and cols[0].startswith("0x"):
            rows.setdefault(cols[4], []).append(int(cols[0], 16))
    return rows


def _readelf_build_id(path: Path) -> bytes:
    text = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", text)
    assert m, f"readelf shows no build-id for {path}"
    return bytes.fromhex(m.group(1))


@pytest.fixture(scope="module")
def expected(user_cores: Path) -> dict:
    return json.loads((user_cores / "expected.json").read_text())


@pytest.mark.parametrize("core", CORES)
def test_nm_lists_expected_symbols(user_cores: Path, expected: dict, core: str) -> None:
    target = open_target(str(need_fixture(user_cores / core)), config=Config())
    out, err = _run(Session(target), "::nm")
    assert err == ""
    table = _nm_table(out)
    for name, addr in expected[core]["symbols"].items():
        assert int(addr, 16) in table.get(name, []), f"{core}: ::nm has {name} at {table.get(name)}, want {addr}"
    # the same symbols, one by one through a glob filter and by address
    session = Session(target)
    for name, addr in expected[core]["symbols"].items():
        assert _nm_table(_run(session, f"::nm -f {name}")[0]) == {name: [int(addr, 16)]}
        assert _nm_table(_run(session, f"{addr}::nm")[0]) == {name: [int(addr, 16)]}


@pytest.mark.parametrize("spelling", ["libc.so.6`malloc", "libc`malloc"])
def test_library_symbols_where_gdb_puts_them(user_cores: Path, spelling: str) -> None:
    need_tools("gdb")
    core = need_fixture(user_cores / X86_CORE)
    exe = user_cores / X86_EXE
    text = gdb_batch(exe, core, ["print/x (unsigned long)&malloc"])
    m = re.search(r"= (0x[0-9a-f]+)", text)
    assert m, f"gdb did not place malloc: {text[-300:]}"
    target = open_target(str(core), config=Config())
    out, err = _run(Session(target), f"{spelling}::nm")
    assert err == ""
    rows = _nm_table(out)
    assert list(rows.values()) == [[int(m.group(1), 16)]]
    assert all(name.startswith("libc.so.6`") for name in rows)
    # the executable's own symbols carry no module
    assert target.symbols.lookup("main").module is None


def test_build_ids_match_readelf(user_cores: Path) -> None:
    if not shutil.which("readelf"):
        pytest.skip("needs readelf")
    for exe in ("hashcrash-x86_64-O2", "hashcrash-i386-O2", "hashcrash-sparc64-O2"):
        path = need_fixture(user_cores / exe)
        assert build_id_of_file(str(path)) == _readelf_build_id(path)
    assert build_id_of_file(str(user_cores / "README.md")) is None
    assert build_id_of_file(str(user_cores / "no-such-file")) is None


@pytest.mark.parametrize("core,exe,start", [(X86_CORE, X86_EXE, 0x400000),
                                            ("hashcrash-i386-O2.core", "hashcrash-i386-O2", 0x8048000)])
def test_build_id_from_core_memory(user_cores: Path, core: str, exe: str, start: int) -> None:
    target = open_target(str(need_fixture(user_cores / core)), config=Config())
    assert build_id_in_memory(target.memory, start) == _readelf_build_id(user_cores / exe)
    # no ELF header there: no build-id, and no exception
    assert build_id_in_memory(target.memory, start + 0x1000) is None


def test_find_file_order_and_build_id(user_cores: Path, tmp_path: Path) -> None:
    good = need_fixture(user_cores / X86_EXE)
    want = build_id_of_file(str(good))
    beside, search, root = tmp_path / "beside", tmp_path / "search", tmp_path / "root"
    for d in (beside, search, root / "build"):
        d.mkdir(parents=True)
    # a different ELF under the same name beside the core; the right one on the search path
    shutil.copy(user_cores / "hashcrash-i386-O2", beside / X86_EXE)
    shutil.copy(good, search / X86_EXE)
    recorded = f"/nonexistent/{X86_EXE}"
    found = find_file(recorded, core_dir=str(beside), search_path=[str(search)], expected_build_id=want)
    assert found == str(search / X86_EXE)
    unchecked = find_file(recorded, core_dir=str(beside), search_path=[str(search)],
                          expected_build_id=want, check_build_id=False)
    assert unchecked == str(beside / X86_EXE)
    # the recorded path under a sysroot comes first
    shutil.copy(good, root / "build" / X86_EXE)
    assert find_file(f"/build/{X86_EXE}", core_dir=str(beside), sysroot=str(root),
                     expected_build_id=want) == str(root / "build" / X86_EXE)
    assert find_file(recorded, core_dir=str(tmp_path), expected_build_id=want) is None


def test_wrong_executable_is_reported_not_used(user_cores: Path, tmp_path: Path) -> None:
    core = tmp_path / X86_CORE
    shutil.copy(need_fixture(user_cores / X86_CORE), core)
    shutil.copy(user_cores / "hashcrash-i386-O2", tmp_path / X86_EXE)
    target = open_target(str(core), config=Config(), sysroot=str(tmp_path / "empty-root"))
    warnings = " | ".join(target.warnings)  # type: ignore[attr-defined]
    assert "build-id mismatch" in warnings and X86_EXE in warnings
    assert "libc.so.6: not found" in warnings
    assert target.symbols.lookup("g_table") is None
    # -s names the right file: its symbols come back at the addresses expected.json lists
    fixed = open_target(str(core), config=Config(), sysroot=str(tmp_path / "empty-root"),
                        symbol_files=[str(user_cores / X86_EXE)])
    sym = fixed.symbols.lookup("g_table")
    assert sym is not None and sym.addr == 0x404100


def test_bad_elf_files_give_format_errors(tmp_path: Path, user_cores: Path) -> None:
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 60)
    with pytest.raises(FormatError):
        open_elf(str(junk))
    with pytest.raises(FormatError):
        open_elf(str(tmp_path / "missing.so"))
    truncated = tmp_path / "trunc"
    truncated.write_bytes(need_fixture(user_cores / X86_EXE).read_bytes()[:2000])
    assert build_id_of_file(str(truncated)) in (None, _readelf_build_id(user_cores / X86_EXE))


def test_whatis_names_symbol_heap_and_stack(user_cores: Path, expected: dict) -> None:
    need_tools("gdb")
    core = need_fixture(user_cores / X86_CORE)
    exp = expected[X86_CORE]
    text = gdb_batch(user_cores / X86_EXE, core, ["info symbol 0x401075"])
    m = re.search(r"^(\w+) \+ (\d+) in section", text, re.M)
    assert m, text
    session = Session(open_target(str(core), config=Config()))
    out, err = _run(session, "0x401075::whatis")
    assert err == "" and out.startswith(f"401075 is {m.group(1)}+{int(m.group(2)):#x}, in function ")
    out, _ = _run(session, "g_table::whatis")
    assert out.startswith(f"{int(exp['symbols']['g_table'], 16):x} is g_table, in variable g_table (struct node **)")
    heap = int(exp["calls"][0]["args"][0], 16)            # g_table's value came from malloc
    out, _ = _run(session, f"{heap:#x}::whatis")
    assert out.startswith(f"{heap:x} is in the heap (mapping ")
    sp = int(exp["crash_registers"]["rsp"], 16)
    out, _ = _run(session, f"{sp:#x}::whatis")
    assert out.startswith(f"{sp:x} is in the stack of thread 1 ")
    out, err = _run(session, "0::whatis")
    assert (out, err) == ("0 is not in any mapping of the dump\n", "")
