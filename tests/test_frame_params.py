"""Frame parameters from DWARF on user cores (issue 16), against gdb.

tests/data/threads.c built at -O0 and -O2 (x86-64 and i386; kernel cores and gcore), as
tests/cores.py makes them. gdb's Python API is the oracle: for each frame of the program's
own functions, each argument's value, or None where gdb says it is optimized out. pmdb's
``bt -a`` rows carry the same parameters by name; where pmdb gives a value it is gdb's, and
at -O0 (every parameter in the frame, at an offset from the CFA) it gives every one. At -O2
the values a function was entered with (gdb's ``kind=kind@entry=1``) come from the callers'
call sites (DW_TAG_call_site_parameter), as gdb's ``PARAM@entry`` gives them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import pmdb
from tests import kernel_truth as kt
from tests.conftest import need_fixture
from tests.cores import BuiltCore, built_core_list, built_cores, gdb_batch  # noqa: F401 (fixtures)
from tests.linux_vmcore import KASLR

_ORACLE = r'''
import gdb, json
gdb.execute("set backtrace past-main on")     # main's caller: where its entry values come from
out = {}
for inf in gdb.inferiors():
    for th in inf.threads():
        th.switch()
        frame, frames = gdb.newest_frame(), []
        while frame is not None and len(frames) < 64:
            params = []
            try:
                block = frame.block()
            except RuntimeError:
                block = None
            while block is not None and block.function is None:
                block = block.superblock
            if block is not None and frame.type() == gdb.NORMAL_FRAME:
                frame.select()
                for sym in block:
                    if not sym.is_argument:
                        continue
                    try:
                        value = sym.value(frame)
                        now = None if value.is_optimized_out else int(value)
                    except (gdb.error, ValueError, TypeError):
                        now = None
                    try:
                        at_entry = int(gdb.parse_and_eval(sym.name + "@entry"))
                    except (gdb.error, ValueError, TypeError):
                        at_entry = None
                    params.append([sym.name, now, at_entry])
            local = []
            inner = frame.block() if block is not None else None
            while inner is not None and frame.type() == gdb.NORMAL_FRAME:
                for sym in inner:
                    if sym.is_argument or not sym.is_variable:
                        continue
                    try:
                        value = sym.value(frame)
                        if value.is_optimized_out:
                            local.append([sym.name, None, False])
                        elif value.type.strip_typedefs().code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_ARRAY,
                                                                  gdb.TYPE_CODE_UNION):
                            local.append([sym.name, int(value.address), True])
                        else:
                            local.append([sym.name, int(value), False])
                    except (gdb.error, ValueError, TypeError):
                        local.append([sym.name, None, False])
                if inner.function is not None:
                    break
                inner = inner.superblock
            if frame.type() != gdb.TAILCALL_FRAME:     # a caller that tail-called: pmdb shows none
                frames.append([frame.name(), params, local, frame.type() == gdb.INLINE_FRAME])
            try:
                frame = frame.older()
            except gdb.error:
                break
        out[th.ptid[1]] = frames
print("PARAMS:" + json.dumps(out))
'''
OWN = ("crash_now", "block_here", "level_a", "level_b", "level_c", "worker", "main")
Frames = dict[int, list[tuple[str, list[tuple[str, int | None, int | None]]]]]


def _gdb_json(core: BuiltCore, script: str, tag: str) -> dict[int, Any]:
    """lwp -> what a gdb Python script printed as JSON after ``tag:`` on the core."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        text = gdb_batch(core.exe, core.core, [f"source {f.name}"])
    finally:
        os.unlink(f.name)
    line = next(line for line in text.splitlines() if line.startswith(tag + ":"))
    return {int(lwp): frames for lwp, frames in json.loads(line[len(tag) + 1:]).items()}


def _gdb_params(core: BuiltCore) -> Frames:
    return {lwp: [(name, [tuple(p) for p in params]) for name, params, _, _ in frames]  # type: ignore[misc]
            for lwp, frames in _gdb_json(core, _ORACLE, "PARAMS").items()}


def _gdb_locals(core: BuiltCore) -> dict[int, list[tuple[str, list[list[Any]]]]]:
    return {lwp: [(name, local) for name, _, local, _ in frames]
            for lwp, frames in _gdb_json(core, _ORACLE, "PARAMS").items()}


def _pmdb_params(core: BuiltCore) -> Frames:
    prog = pmdb.open(str(core.core), str(core.exe))
    out: Frames = {}
    for row in prog.run("bt -a"):
        if not isinstance(row, dict):
            continue
        name = str(row["function"]).split("(")[0].split("`")[-1].split("+")[0]
        params = [(a["name"], None if a["value"] is None else int(a["value"]),
                   None if a["entry"] is None else int(a["entry"])) for a in row["args"] if isinstance(a, dict)]
        out.setdefault(row["thread"], []).append((name, params))
    return out


def _own_frames(frames: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    return [(name, params) for name, params in frames if name in OWN]


def test_parameters_equal_gdbs(built_core_list: list[BuiltCore]) -> None:  # noqa: F811
    checked = {"value": 0, "entry": 0}
    for core in built_core_list:
        gdb, ours = _gdb_params(core), _pmdb_params(core)
        assert set(gdb) == set(ours), core.name
        mask = (1 << (8 * (4 if core.arch == "i386" else 8))) - 1
        for lwp, frames in gdb.items():
            want, got = _own_frames(frames), _own_frames(ours[lwp])
            assert [n for n, _ in want] == [n for n, _ in got], (core.name, lwp, want, got)
            for (name, wparams), (_, gparams) in zip(want, got, strict=True):
                assert [p[0] for p in wparams] == [p[0] for p in gparams], (core.name, name)
                for (param, wv, we), (_, gv, ge) in zip(wparams, gparams, strict=True):
                    where = (core.name, lwp, name, param)
                    # what pmdb says is what gdb says (gdb masks a negative int to the word)
                    if gv is not None:
                        assert wv is not None and gv & mask == wv & mask, (*where, gv, wv)
                        checked["value"] += 1
                    elif core.opt == "-O0":
                        pytest.fail(f"{where}: no value at -O0, gdb has {wv}")
                    if ge is not None:
                        assert we is not None and ge & mask == we & mask, (*where, "entry", ge, we)
                        checked["entry"] += 1
    assert checked["value"] >= 30 and checked["entry"] >= 8, checked


def test_bt_shows_parameters_as_gdb_does(built_cores: dict[str, BuiltCore]) -> None:  # noqa: F811
    core = next(c for c in built_cores.values() if c.arch == "x86_64" and c.opt == "-O0")
    lines = [r for r in pmdb.open(str(core.core), str(core.exe)).run("bt -a") if isinstance(r, dict)]
    texts = [str(r["function"]) for r in lines]
    assert any(t.startswith("crash_now") and "(p=0x0)" in t for t in texts), texts
    assert any(t.startswith("level_a+") and "(kind=" in t for t in texts), texts
    # at -O2 gdb's own notation for a value known at the pc and at entry, both the same
    o2 = next(c for c in built_cores.values() if c.arch == "x86_64" and c.opt == "-O2")
    texts = [str(r["function"]) for r in pmdb.open(str(o2.core), str(o2.exe)).run("bt -a") if isinstance(r, dict)]
    assert any(t.startswith("level_b+") and "(kind=kind@entry=" in t for t in texts), texts


def test_bt_full_locals_equal_gdbs(built_core_list: list[BuiltCore]) -> None:  # noqa: F811
    """``bt full``'s locals: gdb's names in gdb's order (innermost block first), each value
    pmdb gives equal to gdb's (a struct's or array's address), every one at -O0."""
    checked = 0
    for core in built_core_list:
        gdb = _gdb_locals(core)
        prog = pmdb.open(str(core.core), str(core.exe))
        ours: dict[int, list[tuple[str, list[Any]]]] = {}
        for row in prog.run("bt -a full"):
            if isinstance(row, dict):
                name = str(row["function"]).split("(")[0].split("`")[-1].split("+")[0]
                ours.setdefault(row["thread"], []).append((name, row["locals"] or []))
        mask = (1 << (8 * (4 if core.arch == "i386" else 8))) - 1
        for lwp, frames in gdb.items():
            want, got = _own_frames(frames), _own_frames(ours[lwp])
            assert [n for n, _ in want] == [n for n, _ in got], (core.name, lwp)
            for (fn, wlocals), (_, glocals) in zip(want, got, strict=True):
                assert [w[0] for w in wlocals] == [g["name"] for g in glocals], (core.name, fn, wlocals, glocals)
                for (name, value, aggregate), g in zip(wlocals, glocals, strict=True):
                    assert bool(g["type"]) == aggregate, (core.name, fn, name)
                    if g["value"] is not None:
                        bits = mask if aggregate else (1 << (8 * g["size"])) - 1      # gdb: a signed char is -9
                        assert value is not None and int(g["value"]) & bits == value & bits, \
                            (core.name, lwp, fn, name, value, g["value"])
                        checked += 1
                    elif core.opt == "-O0":
                        pytest.fail(f"{core.name} {fn}: {name} unknown at -O0 (gdb: {value})")
    assert checked >= 30, checked


def test_inlined_calls_are_frames_where_gdb_has_them(built_core_list: list[BuiltCore]) -> None:  # noqa: F811
    """gdb shows a call the compiler inlined as a frame of its own (libc's futex_wait inside
    __lll_lock_wait, with libc6-dbg): pmdb's bt puts an ``(inlined)`` frame in the same
    place, named as gdb names it; every other frame stays as it was."""
    inlined = 0
    for core in built_core_list:
        gdb = {lwp: [(name, inline) for name, _, _, inline in frames]
               for lwp, frames in _gdb_json(core, _ORACLE, "PARAMS").items()}
        ours: dict[int, list[tuple[str, bool]]] = {}
        for row in pmdb.open(str(core.core), str(core.exe)).run("bt -a"):
            if isinstance(row, dict):
                name = str(row["function"]).split("(")[0].split("`")[-1].split("+")[0]
                ours.setdefault(row["thread"], []).append((name, row["method"] == "inline"))
        for lwp, frames in gdb.items():
            assert [k for _, k in frames] == [k for _, k in ours[lwp]], (core.name, lwp, frames, ours[lwp])
            for (want, is_inline), (got, _) in zip(frames, ours[lwp], strict=True):
                if is_inline:
                    assert got == want, (core.name, lwp, want, got)
                    inlined += 1
    if _has_libc_debug():
        assert inlined >= 4, inlined


def _has_libc_debug() -> bool:
    return any(Path("/usr/lib/debug/.build-id").glob("*/*.debug"))


# -- kernel frames, against drgn ---------------------------------------------------------------

_DRGN = r'''
import drgn, json, sys
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
out = []
for f in prog.crashed_thread().stack_trace():
    if f.is_inline:
        continue
    params = []
    try:
        names = f.locals()
    except (LookupError, ValueError):
        names = []
    for name in names:
        try:
            o = f[name]
            ok = not o.absent_ and o.type_.kind in (drgn.TypeKind.INT, drgn.TypeKind.POINTER, drgn.TypeKind.ENUM,
                                                    drgn.TypeKind.BOOL)
            params.append([name, o.value_() if ok else None])
        except (LookupError, ValueError, drgn.FaultError):
            params.append([name, None])
    out.append([f.name, params])
print("DRGN:" + json.dumps(out))
'''


def test_kernel_frame_parameters_equal_drgns(tmp_path: Path) -> None:
    """$c N on the fixture dump with its debug vmlinux: each parameter pmdb gives a value is
    drgn's value of it (drgn walks the vmlinux's CFI; pmdb's ORC walk gets the callee-saved
    registers from the same .debug_frame); the oops' frames have theirs."""
    pytest.importorskip("drgn", reason="drgn (pip install drgn) is the oracle")
    dump = need_fixture(KASLR / "dump.202611221942")
    vmlinux = kt.need_dbg_vmlinux("6.1.0-56-amd64")
    proc = subprocess.run([sys.executable, "-c", _DRGN, str(dump), str(vmlinux)], capture_output=True,
                          text=True, timeout=600)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DRGN:"))
    drgn_frames = {name: dict(params) for name, params in json.loads(line[5:]) if name}
    prog = pmdb.open(str(dump), str(vmlinux))
    checked = 0
    for row in prog.run("$c 0t16"):
        name = re.sub(r"\W.*", "", str(row["function"]))       # oops_end.cold+0x18(...): drgn's oops_end
        theirs = drgn_frames.get(name, {})
        for cell in row["args"]:
            if isinstance(cell, dict) and cell["value"] is not None and theirs.get(cell["name"]) is not None:
                assert int(cell["value"]) == theirs[cell["name"]] & ((1 << 64) - 1), (name, cell, theirs)
                checked += 1
    assert checked >= 6, checked
    text = " ".join(str(r["function"]) for r in prog.run("$c 0t16"))
    assert "page_fault_oops+0xf9(regs=regs@entry=0x" in text and "address=address@entry=24" in text
    # the module's debug file gives its frames theirs: the oops' function got NULL (crashdrv.c)
    prog.run(f"mod -s crashdrv {need_fixture(KASLR / 'crashdrv.ko')}")
    text = " ".join(str(r["function"]) for r in prog.run("$c 0t16"))
    assert "crashdrv_widget_bump+0x5(w=w@entry=0x0)" in text, text
