"""::dis and the i/I formats against gdb's ``disassemble`` (intel flavour) on cores built here.

Both sides decode the same bytes, so addresses and mnemonics must be equal;
operands are compared after normalising how gdb and capstone spell the same
thing (spacing, ``PTR`` case, ``+0x0``, ``*1``, ``ds:addr``, decimal vs hex).
The SPARC fixture cores (no SPARC gdb here) are checked against what their
README says about ``lookup``: a leaf that divides with udivx and returns by retl.
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
from pmdb.target import Target
from tests.conftest import need_fixture
from tests.cores import gdb_batch
from tests.test_formats import Prog, fmt_progs, prog_targets  # noqa: F401  (session fixtures)

_GDB_LINE = re.compile(r"^\s*(?:=>)?\s*(0x[0-9a-f]+) <([^>]*)>:\s*(.*)$")
_DIS_LINE = re.compile(r"^(\S+):\s+(\S+)\s*(.*)$")


def run(target: Target, line: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert Session(target, stdout=out, stderr=err).run_line(line), err.getvalue()
    assert not err.getvalue()
    return out.getvalue()


def gdb_disassemble(prog: Prog, func: str) -> list[tuple[int, str, str, str]]:
    """(address, <func+off> label, mnemonic, operands) of gdb's intel ``disassemble``."""
    text = gdb_batch(prog.exe, prog.core, ["set disassembly-flavor intel", f"disassemble {func}"])
    rows = []
    for line in text.splitlines():
        m = _GDB_LINE.match(line)
        if m:
            mnemonic, _, ops = m.group(3).partition(" ")
            rows.append((int(m.group(1), 16), m.group(2), mnemonic, ops.strip()))
    assert rows, text
    return rows


def pmdb_dis(target: Target, line: str) -> list[tuple[str, str, str]]:
    """(label, mnemonic, operands) per ::dis line."""
    rows = []
    for text in run(target, line).splitlines():
        m = _DIS_LINE.match(text)
        assert m, text
        rows.append((m.group(1), m.group(2), m.group(3)))
    return rows


def normalize(ops: str) -> str:
    """One spelling for gdb's and capstone's operands."""
    s = ops.lower()
    s = re.sub(r"<[^>]*>", "", s)                    # symbol annotations
    s = re.sub(r"#.*$", "", s)                       # gdb's and pmdb's address comments
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"(byte|word|dword|qword)ptrds:(0x[0-9a-f]+)", r"\1ptr[\2]", s)
    s = re.sub(r"\*1\b", "", s)
    s = re.sub(r"\+[re]iz\b", "", s)                # gdb names an SIB byte without an index""")
    s = re.sub(r"\+0x0\]", "]", s)
    return re.sub(r"\b(0x[0-9a-f]+|\d+)\b", lambda m: hex(int(m.group(1), 0)), s)


def normalize_mnemonic(mnemonic: str, ops: str) -> tuple[str, str]:
    """gdb writes segment/data16 prefixes of padding nops as words before the mnemonic."""
    words = f"{mnemonic} {ops}".split()
    while words and words[0] in ("cs", "ds", "data16"):
        words.pop(0)
    return words[0], " ".join(words[1:])


def test_dis_lookup_matches_gdb(prog_targets: list[tuple[Prog, Target]]) -> None:  # noqa: F811
    for prog, target in prog_targets:
        theirs = gdb_disassemble(prog, "lookup")
        plain = pmdb_dis(target, "lookup::dis -a")
        assert [int(label, 16) for label, _, _ in plain] == [a for a, _, _, _ in theirs], prog.name
        for (addr, _, g_mn, g_ops), (_, p_mn, p_ops) in zip(theirs, plain, strict=True):
            g_mn, g_ops = normalize_mnemonic(g_mn, g_ops)
            assert p_mn == g_mn, (prog.name, hex(addr))
            assert normalize(p_ops) == normalize(g_ops), (prog.name, hex(addr), p_ops, g_ops)
        # the symbolic labels say the same offsets as gdb's <lookup+N>
        named = pmdb_dis(target, "lookup::dis")
        for (_, g_label, _, _), (label, _, _) in zip(theirs, named, strict=True):
            g_off = int(g_label.partition("+")[2] or 0)
            assert label == ("lookup" if g_off == 0 else f"lookup+{g_off:#x}")


def test_branch_targets_are_named_like_gdb(prog_targets: list[tuple[Prog, Target]]) -> None:  # noqa: F811
    for prog, target in prog_targets:
        gdb_names = {}
        for addr, _, mnemonic, ops in gdb_disassemble(prog, "lookup"):
            m = re.search(r"(0x[0-9a-f]+) <(\w+)\+?(\d*)>", ops)
            if m and mnemonic.startswith(("j", "call")):
                gdb_names[addr] = (int(m.group(1), 16), m.group(2), int(m.group(3) or 0))
        assert gdb_names, prog.name             # lookup loops: it has branches
        lines = run(target, "lookup::dis").splitlines()
        listed = dict(zip([a for a, *_ in gdb_disassemble(prog, "lookup")], lines, strict=True))
        for addr, (dest, func, off) in gdb_names.items():
            want = f"{dest:#x} <{func}+{off:#x}>" if off else f"{dest:#x} <{func}>"
            assert want in listed[addr], (prog.name, listed[addr], want)


def test_dis_counts_and_windows(prog_targets: list[tuple[Prog, Target]]) -> None:  # noqa: F811
    prog, target = prog_targets[0]
    theirs = [a for a, *_ in gdb_disassemble(prog, "lookup")]
    # addr,count: exactly count instructions from addr
    assert [int(r[0], 16) for r in pmdb_dis(target, "lookup,3::dis -a")] == theirs[:3]
    # -n at a function start: the first n
    assert [int(r[0], 16) for r in pmdb_dis(target, "lookup::dis -a -n 2")] == theirs[:2]
    # inside a function: n before and n from the address, decoded from the function's start
    mid = theirs[5]
    got = [int(r[0], 16) for r in pmdb_dis(target, f"{mid:#x}::dis -a -n 2")]
    assert got == theirs[3:7]


def test_i_and_I_formats_match_dis(prog_targets: list[tuple[Prog, Target]]) -> None:  # noqa: F811
    prog, target = prog_targets[0]
    theirs = gdb_disassemble(prog, "lookup")
    lines = run(target, "lookup/3i").splitlines()
    assert lines[0] == "lookup:" and lines[1].startswith("lookup:")
    body = [lines[1][len("lookup:"):]] + lines[2:]
    assert [line.split()[0] for line in body] == [normalize_mnemonic(mn, ops)[0] for _, _, mn, ops in theirs[:3]]
    # I: each instruction with its own address
    with_addr = run(target, "lookup/2I").splitlines()[1:]
    found = [int(re.search(r"\b([0-9a-f]+): \S", line).group(1), 16) for line in with_addr]  # type: ignore[union-attr]
    assert found == [a for a, *_ in theirs[:2]]


def test_dis_of_unmapped_address_is_one_line(prog_targets: list[tuple[Prog, Target]]) -> None:  # noqa: F811
    _, target = prog_targets[0]
    out, err = io.StringIO(), io.StringIO()
    assert not Session(target, stdout=out, stderr=err).run_line("0::dis")
    assert err.getvalue().count("\n") == 1 and "0x0" in err.getvalue()


# -- SPARC (fixture cores), checked against the fixture's README --------------------------

@pytest.mark.parametrize("core", ["hashcrash-sparc64-O2.core", "hashcrash-sparc64-O0.core"])
def test_sparc_lookup(core: str, user_cores: Path) -> None:
    target = open_target(str(need_fixture(user_cores / core)), config=Config())
    expected = json.loads((user_cores / "expected.json").read_text())[core]
    start = int(expected["symbols"]["lookup"], 16)
    sym = target.symbols.lookup("lookup")
    assert sym is not None and sym.addr == start
    rows = pmdb_dis(target, "lookup::dis -a")
    addrs = [int(label, 16) for label, _, _ in rows]
    # fixed 4-byte instructions covering the whole function
    assert addrs == list(range(start, start + sym.size, 4))
    mnemonics = [mn for _, mn, _ in rows]
    assert "udivx" in mnemonics                 # the README: lookup divides with udivx
    if "-O2" in core:
        assert "save" not in mnemonics          # a leaf: no register window
        assert mnemonics[-2:] == ["retl", "nop"]    # returns by retl, the delay slot a nop
    else:
        # -O0 keeps a frame: save first, then V9 'return' (capstone spells it 'rett') + delay slot
        assert mnemonics[0] == "save" and mnemonics[-2] in ("return", "rett")
    for label, mn, ops in pmdb_dis(target, "lookup::dis"):
        if mn.startswith("b") and "<" in ops:   # branches stay inside the function
            assert "<lookup+" in ops, (label, mn, ops)
    # a call from bench names lookup (bench calls lookup n times)
    assert any("<lookup>" in ops for _, mn, ops in pmdb_dis(target, "bench::dis") if mn == "call")


def test_kernel_core_code_comes_from_the_executable(user_cores: Path) -> None:
    """The kernel left lookup's text out of this core; ::dis must read it from the executable."""
    core = "hashcrash-x86_64-O2.core"
    target = open_target(str(need_fixture(user_cores / core)), config=Config())
    gdb_core = open_target(str(need_fixture(user_cores / "hashcrash-x86_64-O2.gdb.core")),
                           config=Config())
    # the gdb core holds the executable's text itself: both must decode the same
    assert run(target, "lookup::dis") == run(gdb_core, "lookup::dis")
    assert run(target, "lookup::dis").splitlines()[-1].split()[1] == "ret"
