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
import tempfile
from typing import Any

import pytest

import pmdb
from tests.cores import BuiltCore, built_core_list, built_cores, gdb_batch  # noqa: F401 (fixtures)

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
            frames.append([frame.name(), params])
            try:
                frame = frame.older()
            except gdb.error:
                break
        out[th.ptid[1]] = frames
print("PARAMS:" + json.dumps(out))
'''
OWN = ("crash_now", "block_here", "level_a", "level_b", "level_c", "worker", "main")
Frames = dict[int, list[tuple[str, list[tuple[str, int | None, int | None]]]]]


def _gdb_params(core: BuiltCore) -> Frames:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(_ORACLE)
    try:
        text = gdb_batch(core.exe, core.core, [f"source {f.name}"])
    finally:
        os.unlink(f.name)
    line = next(line for line in text.splitlines() if line.startswith("PARAMS:"))
    return {int(lwp): [(name, [tuple(p) for p in params]) for name, params in frames]  # type: ignore[misc]
            for lwp, frames in json.loads(line[len("PARAMS:"):]).items()}


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
