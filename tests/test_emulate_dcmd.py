"""::emulate through the real dcmd on the user-core fixtures, against expected.json.

The results come from the crashed programs themselves (their .out files and the
globals in the cores, as recorded in expected.json); the trace and flow views are
compared exactly with golden files whose values were checked against the same
sources (tunable from the README, the results from expected.json).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session

DATA = Path(__file__).parent / "data" / "emulate"
X86_CORES = ("hashcrash-x86_64-O2.core", "hashcrash-x86_64-O2.gdb.core", "hashcrash-i386-O2.core")
SPARC_CORES = ("hashcrash-sparc64-O2.core", "hashcrash-sparc64-O0.core")


@pytest.fixture(scope="module")
def expected(user_cores: Path) -> dict:
    return json.loads((user_cores / "expected.json").read_text())


def _session(user_cores: Path, core: str) -> tuple[Session, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    target = open_target(str(user_cores / core), config=Config())
    return Session(target, stdout=out, stderr=err), out, err


def _run(session: Session, out: io.StringIO, err: io.StringIO, line: str) -> tuple[bool, str, str]:
    out.seek(0)
    out.truncate()
    err.seek(0)
    err.truncate()
    ok = session.run_line(line)
    return ok, out.getvalue(), err.getvalue()


def _num(v: int | str) -> int:
    return int(v, 0) if isinstance(v, str) else v


def _call_line(call: dict, extra: str = "") -> str:
    args = " ".join(f"0t{_num(a)}" for a in call["args"])
    return f"{call['function']}::emulate {extra}{args}".replace("  ", " ")


@pytest.mark.parametrize("core", X86_CORES + SPARC_CORES)
def test_calls_give_the_programs_results(user_cores: Path, expected: dict, core: str) -> None:
    if core in SPARC_CORES:
        pytest.importorskip("pmdb.emulate.sparc64")
    session, out, err = _session(user_cores, core)
    for call in expected[core]["calls"]:
        ok, text, problems = _run(session, out, err, _call_line(call))
        assert ok, problems
        last = text.rstrip("\n").splitlines()[-1]
        assert last == f"return: {_num(call['result']):#x}", (call, text)


@pytest.mark.parametrize("core", X86_CORES + SPARC_CORES)
def test_patched_calls(user_cores: Path, expected: dict, core: str) -> None:
    if core in SPARC_CORES:
        pytest.importorskip("pmdb.emulate.sparc64")
    session, out, err = _session(user_cores, core)
    calls = expected[core].get("patched_calls")
    if calls is None:
        # expected.json lists none for i386: the same keys, checked through the dump itself
        # (the node found must hold the key; 864 is not in bucket 0, so NULL)
        table = _num(expected[core]["calls"][0]["args"][0])
        calls = [{"patch": {"symbol": "tunable", "value": 1, "size": 8}, "function": "lookup",
                  "args": [table, 64, key], "result": None} for key in (178, 864)]
    for call in calls:
        p = call["patch"]
        ok, text, problems = _run(session, out, err,
                                  _call_line(call, f"-P {p['symbol']}={p['value']}:{p['size']} "))
        assert ok, problems
        last = text.rstrip("\n").splitlines()[-1]
        if call["result"] is not None:
            assert last == f"return: {_num(call['result']):#x}"
            continue
        node = int(last.split()[-1], 16)
        key = _num(call["args"][2])
        if key == 864:
            assert node == 0
        else:
            assert node != 0 and session.target.memory.u64(node) == key
    # the patch lives only in the emulation: the dump still holds the original tunable
    ok, text, _ = _run(session, out, err, "tunable/J")
    assert ok and "9e3779b97f4a7c15" in text


def test_patch_through_a_config_file(user_cores: Path, expected: dict, tmp_path: Path) -> None:
    core = "hashcrash-x86_64-O2.core"
    call = expected[core]["patched_calls"][0]
    cfg = tmp_path / "emu.toml"
    args = ", ".join(str(_num(a)) for a in call["args"])
    cfg.write_text(f'[emulate]\nfunction = "lookup"\nargs = [{args}]\n'
                   'patches = [{ where = "tunable", value = 1, size = 8 }]\n')
    session, out, err = _session(user_cores, core)
    ok, text, problems = _run(session, out, err, f"::emulate -f {cfg}")
    assert ok, problems
    assert text.splitlines()[-1] == f"return: {_num(call['result']):#x}"


@pytest.mark.parametrize(("core", "view", "index"), [("hashcrash-x86_64-O2.core", "t", 0),
                                                     ("hashcrash-x86_64-O2.core", "F", 0),
                                                     ("hashcrash-i386-O2.core", "F", 0),
                                                     ("hashcrash-sparc64-O2.core", "F", 4)])
def test_trace_and_flow_views_golden(user_cores: Path, expected: dict, core: str, view: str,
                                     index: int) -> None:
    if core in SPARC_CORES:
        pytest.importorskip("pmdb.emulate.sparc64")
    session, out, err = _session(user_cores, core)
    call = expected[core]["calls"][index]
    ok, text, problems = _run(session, out, err, _call_line(call, f"-{view} "))
    assert ok, problems
    arch = expected[core]["arch"]
    golden = (DATA / f"{call['function']}-{arch}.{'trace' if view == 't' else 'flow'}").read_text()
    assert text == golden


def test_emulated_target_regs_stack_and_memory(user_cores: Path, expected: dict) -> None:
    core = "hashcrash-x86_64-O2.core"
    syms = expected[core]["symbols"]
    session, out, err = _session(user_cores, core)
    bench = expected[core]["calls"][-1]
    ok, text, problems = _run(session, out, err, "lookup::bp")
    assert ok, problems
    ok, text, problems = _run(session, out, err, _call_line(bench, "-s "))
    assert ok, problems
    assert session.target is not None and session.target.kind == "emulated"
    ok, regs, _ = _run(session, out, err, "$r")
    assert ok
    rip_line = next(line for line in regs.splitlines() if "%rip" in line)
    assert f"{int(syms['lookup'], 16):016x}" in rip_line and "lookup" in rip_line
    ok, stack, _ = _run(session, out, err, "$c")
    assert ok
    frames = stack.splitlines()
    assert frames[0].startswith("lookup(") and frames[1].startswith("bench+")
    assert len(frames) == 2        # the sentinel ends the stack
    # the return address bench pushed is on the emulated stack, not in the dump
    ok, word, _ = _run(session, out, err, "<rsp/K")
    assert ok
    ret = int(word.split(":")[1], 16)
    assert syms["bench"] < hex(ret) and session.target.symbols.describe(ret).startswith("bench+")
    ok, text, _ = _run(session, out, err, "::step out")
    assert ok and "stepped to" in text
    ok, text, _ = _run(session, out, err, "lookup::bp -d")
    ok, text, problems = _run(session, out, err, "::cont")
    assert ok, problems
    assert text.splitlines()[-1] == f"return: {_num(bench['result']):#x}"
    ok, _, _ = _run(session, out, err, "::target dump")
    assert ok and session.target.kind != "emulated"


@pytest.mark.parametrize(("line", "message"), [
    ("lookup::emulate -r foo=1 0 0 0", "pmdb: unknown register %foo\n"),
    ("lookup::emulate -P 0x10=1:8 0 0 0", "pmdb: patch at 0x10 (8 bytes) is outside any mapping of the dump\n"),
    ("bench::emulate -n 0t100 *g_table 0t64 0t1000", "pmdb: instruction budget exhausted at 0x401377 after 100 instructions\n"),
    ("0x1234::emulate", "pmdb: fault at 0x1234: fetch from unmapped page 0x1000 (address 0x1234)\n"),
    ("lookup::emulate 0x10 0t64 0t864", "pmdb: fault at 0x401362: read from unmapped page 0x0 (address 0x200)\n"),
    ("lookup::emulate -q", "pmdb: emulate: unknown option -q (usage: FUNC::emulate [-t] [-F] [-s] [-f file.toml] "
     "[-r reg=value]... [-P where=value:size]... [-b addr]... [-n budget] [arg ...])\n"),
    ("::cont", "pmdb: the current target is not an emulated CPU (FUNC::emulate -s makes one)\n"),
])
def test_bad_input_is_one_line(user_cores: Path, line: str, message: str | None) -> None:
    session, out, err = _session(user_cores, "hashcrash-x86_64-O2.core")
    ok, _, problems = _run(session, out, err, line)
    assert not ok
    assert problems.count("\n") == 1 or (message is None and problems.startswith("pmdb: "))
    if message is not None:
        assert problems == message
    # the session goes on
    ok, text, _ = _run(session, out, err, "lookup::emulate g_table 0t64 0t3")
    assert ok and text.splitlines()[-1].startswith("return: 0x")


def test_every_emulate_option_is_documented_in_pmdb_toml() -> None:
    import re

    from pmdb.emulate.options import EMULATE_OPTIONS

    text = (Path(__file__).parent.parent / "pmdb.toml").read_text()
    section = text.split("\n[emulate]\n", 1)[1]
    documented = set(re.findall(r"^# (\w+) = ", section, re.M))
    assert documented == {o.name for o in EMULATE_OPTIONS}


def test_the_emulate_table_of_pmdb_toml_is_used_and_checked(user_cores: Path, expected: dict,
                                                            tmp_path: Path) -> None:
    core = "hashcrash-x86_64-O2.core"
    call = expected[core]["patched_calls"][0]
    cfg = tmp_path / "pmdb.toml"
    cfg.write_text('[emulate]\npatches = [{ where = "tunable", value = 1, size = 8 }]\n')
    out, err = io.StringIO(), io.StringIO()
    session = Session(open_target(str(user_cores / core), config=Config()), config=Config.from_file(str(cfg)),
                      stdout=out, stderr=err)
    ok, text, problems = _run(session, out, err, _call_line(call))
    assert ok, problems
    assert text.splitlines()[-1] == f"return: {_num(call['result']):#x}"
    cfg.write_text("[emulate]\nbudget = 0\n")
    session.config = Config.from_file(str(cfg))
    ok, _, problems = _run(session, out, err, _call_line(call))
    assert not ok
    assert problems == "pmdb: pmdb.toml [emulate]: emulate option budget: 0 is outside [1, 10000000000]\n"


def test_flow_golden_matches_the_chain_in_the_dump(user_cores: Path, expected: dict) -> None:
    """Every argument and return value of the chain_sum flow golden, computed from the dump's
    nodes with the program's formula (rest * 31 + (key ^ val)), not by emulation."""
    core = "hashcrash-sparc64-O2.core"
    target = open_target(str(user_cores / core), config=Config())
    node = _num(expected[core]["calls"][4]["args"][0])
    chain = []
    while node:
        chain.append((node, target.memory.u64(node), target.memory.u64(node + 8)))
        node = target.memory.u64(node + 16)
    sums = [0]
    for _, key, val in reversed(chain):
        sums.append((sums[-1] * 31 + (key ^ val)) & (2**64 - 1))
    args = [n for n, _, _ in chain] + [0]
    want = [f"{'  ' * d}-> chain_sum(n={a:#x})" for d, a in enumerate(args)]
    want += [f"{'  ' * d}<- chain_sum = {s:#x}" for d, s in zip(range(len(args) - 1, -1, -1), sums,
                                                                  strict=True)]
    golden = (DATA / "chain_sum-sparc64.flow").read_text().splitlines()
    assert golden[:len(want)] == want
    assert sums[-1] == _num(expected[core]["calls"][4]["result"])


def test_trace_golden_agrees_with_objdump(user_cores: Path, expected: dict) -> None:
    """The lookup trace golden against binutils: each traced address is an instruction
    objdump decodes with the same mnemonic, and the walk ends at lookup's ret."""
    import shutil
    import subprocess

    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed")
    core = "hashcrash-x86_64-O2.core"
    exe = user_cores / expected[core]["executable"]
    text = subprocess.run(["objdump", "-d", "-M", "intel", "--no-show-raw-insn", str(exe)],
                          capture_output=True, text=True, check=True).stdout
    mnemonics = {}
    for line in text.splitlines():
        addr, sep, rest = line.strip().partition(":\t")
        if sep and rest:
            mnemonics[int(addr, 16)] = rest.split()[0]
    lines = (DATA / "lookup-x86_64.trace").read_text().splitlines()
    trace = [line for line in lines if line[:1] in "0123456789abcdef" and "  " in line[:18]]
    for line in trace:
        pc = int(line.split()[0], 16)
        assert mnemonics[pc] == line[39:].split()[0], line
    assert trace[-1].split()[2] == "ret"
    assert f"return: {_num(expected[core]['calls'][0]['result']):#x}" == lines[-1]
