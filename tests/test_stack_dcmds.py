"""$c, $C and ::findstack output, exactly, on the shared fixtures and a built threaded core.

Expected lines are derived from oracles, not from pmdb: the symbol addresses
and crash registers in expected.json, gdb's ``bt`` pcs and its ``info frame``
CFAs ("frame at"), and gdb's thread list.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from tests.conftest import need_fixture
from tests.cores import BuiltCore, built_cores, gdb_bt, gdb_threads  # noqa: F401 - fixture


def _run(core: Path, line: str) -> tuple[list[str], str, bool]:
    out, err = io.StringIO(), io.StringIO()
    session = Session(open_target(str(core), config=Config()), stdout=out, stderr=err)
    ok = session.run_line(line)
    return out.getvalue().splitlines(), err.getvalue(), ok


def _expected(user_cores: Path, core_name: str) -> dict:
    return json.loads((user_cores / "expected.json").read_text())[core_name]


def _sym_off(symbols: dict[str, str], name: str, pc: int) -> str:
    off = pc - int(symbols[name], 16)
    return f"{name}+{off:#x}" if off else name


def test_dollar_c_x86_64_top_frames(user_cores: Path) -> None:
    core = need_fixture(user_cores / "hashcrash-x86_64-O2.core")
    exp = _expected(user_cores, core.name)
    exe = user_cores / exp["executable"]
    pcs = [pc for pc, _ in gdb_bt(exe, core)]
    pcs[0] = int(exp["crash_registers"]["rip"], 16)   # gdb omits frame 0's pc at a line start
    lines, _, ok = _run(core, "$c")
    assert ok
    assert lines[:2] == [f"{_sym_off(exp['symbols'], 'crash', pcs[0])}()",
                         f"{_sym_off(exp['symbols'], 'main', pcs[1])}()"]
    assert lines[-1].startswith("_start+")


def test_stack_is_dollar_c(user_cores: Path) -> None:
    core = need_fixture(user_cores / "hashcrash-x86_64-O2.gdb.core")
    assert _run(core, "::stack")[0] == _run(core, "$c")[0]


@pytest.mark.parametrize("core_name,ptr", [("hashcrash-x86_64-O2.core", 8), ("hashcrash-i386-O2.core", 4)])
def test_dollar_C_frame_addresses_follow_gdb_cfa(user_cores: Path, core_name: str, ptr: int) -> None:
    """$C's first column is the frame base: gdb's 'frame at' (the CFA) less two words."""
    core = need_fixture(user_cores / core_name)
    exe = user_cores / _expected(user_cores, core_name)["executable"]
    oracle = gdb_threads(exe, core)[0].real_frames()
    lines, _, ok = _run(core, "$C")
    assert ok and len(lines) == len(oracle)
    for line, frame in zip(lines[:-1], oracle[:-1], strict=True):
        fp, call = line.split(" ", 1)
        assert len(fp) == 2 * ptr
        assert int(fp, 16) == frame.cfa - 2 * ptr
        assert call.endswith(")")


def test_dollar_C_sparc_prints_biased_sp(user_cores: Path) -> None:
    core = need_fixture(user_cores / "hashcrash-sparc64-O0.core")
    regs = _expected(user_cores, core.name)["crash_registers"]
    lines, _, ok = _run(core, "$C")
    assert ok
    # frame 0 at %o6; its caller (main) at crash's %i6 (the caller's %sp)
    assert lines[0].startswith(f"{int(regs['o6'], 16):016x} crash+")
    assert lines[1].startswith(f"{int(regs['i6'], 16):016x} main+")


def test_findstack_format(user_cores: Path) -> None:
    core = need_fixture(user_cores / "hashcrash-x86_64-O2.core")
    exp = _expected(user_cores, core.name)
    rsp = int(exp["crash_registers"]["rsp"], 16)
    rip = int(exp["crash_registers"]["rip"], 16)
    exe = user_cores / exp["executable"]
    tid = gdb_threads(exe, core)[0].lwp
    lines, _, ok = _run(core, f"0t{tid}::findstack")
    assert ok
    assert lines[0] == f"stack pointer for thread {tid}: {rsp:x}"   # tids in decimal everywhere
    assert lines[1] == f"[ {rsp:016x} {_sym_off(exp['symbols'], 'crash', rip)}() ]"
    assert re.fullmatch(r"  [0-9a-f]{16} main\+0x[0-9a-f]+\(\)", lines[2])
    _, _, ok_v = _run(core, f"0t{tid}::findstack -v")
    assert ok_v


def test_findstack_i386_verbose_shows_stack_arguments(user_cores: Path) -> None:
    """i386 passes arguments on the stack: crash(table) shows g_table's value (the .out file),
    named from the program's DWARF; a frame without DWARF shows the stack words, as mdb does."""
    core = need_fixture(user_cores / "hashcrash-i386-O2.core")
    out = (user_cores / "hashcrash-i386-O2.out").read_text()
    table = int(re.search(r"lookup\(table=(0x[0-9a-f]+)", out).group(1), 16)
    lines, _, ok = _run(core, "::findstack -v")
    assert ok
    assert re.fullmatch(rf"\[ [0-9a-f]{{8}} crash\(table={table:#x}\) \]", lines[1])
    assert any(re.fullmatch(r"  [0-9a-f]{8} 0x[0-9a-f]+\(([0-9a-f]+, ){5}[0-9a-f]+\)", line) for line in lines)


def test_walk_thread_findstack_covers_every_thread(built_cores: dict[str, BuiltCore]) -> None:  # noqa: F811
    core = next((c for c in built_cores.values() if c.arch == "x86_64"), None)
    assert core is not None
    lwps = sorted(t.lwp for t in gdb_threads(core.exe, core.core))
    lines, err, ok = _run(core.core, "::walk thread | ::findstack")
    assert ok, err
    heads = [int(m.group(1)) for m in (re.match(r"stack pointer for thread ([0-9]+): ", x)
                                           for x in lines) if m]
    assert sorted(heads) == lwps
    assert sum(1 for x in lines if re.match(r"  [0-9a-f]{16} level_b\+0x", x)) == len(lwps) - 1
    # without an address ::findstack runs over the thread walker: the same output
    assert _run(core.core, "::findstack")[0] == lines


def test_dollar_c_of_a_given_thread(built_cores: dict[str, BuiltCore]) -> None:  # noqa: F811
    core = next(iter(built_cores.values()))
    oracle = gdb_threads(core.exe, core.core)
    worker = oracle[-1]
    lines, _, ok = _run(core.core, f"0t{worker.lwp}$c")
    assert ok
    ours = ("block_here", "level_c", "level_b", "level_a", "worker")
    names = [x.split("(")[0].split("+")[0] for x in lines]
    assert [n for n in names if n in ours] == [f.name for f in worker.real_frames() if f.name in ours]
    assert len(lines) == len(worker.real_frames())


def test_unknown_thread_is_one_error(user_cores: Path) -> None:
    core = need_fixture(user_cores / "hashcrash-x86_64-O2.core")
    lines, err, ok = _run(core, "0t999999$c")
    assert not ok and lines == []
    assert err.count("\n") == 1 and "no thread" in err
