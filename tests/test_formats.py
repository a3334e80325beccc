"""Format verbs (``addr/fmt``, ``value=fmt``) against the programs' own output and gdb.

Oracles: the fixture cores' ``*.out`` files and expected.json (what hashcrash
computed natively before it crashed), the initializers of a program built here,
and gdb's ``x`` and ``print`` on the same core.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target
from tests.conftest import USER_CORES, need_fixture
from tests.cores import gcore_core, gdb_batch, kernel_core, kernel_cores_possible

# -- helpers --------------------------------------------------------------------------


def run(target: Target | None, line: str) -> str:
    """stdout of one command line; fails the test when pmdb reports an error."""
    out, err = io.StringIO(), io.StringIO()
    session = Session(target, stdout=out, stderr=err)
    ok = session.run_line(line)
    assert ok and not err.getvalue(), err.getvalue()
    return out.getvalue()


def values(text: str) -> list[str]:
    """The value fields of format output: every word that is not a ``label:``."""
    return [w for w in text.split() if not w.endswith(":")]


def error_of(target: Target | None, line: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert not Session(target, stdout=out, stderr=err).run_line(line)
    return err.getvalue()


# -- '=' needs no target ----------------------------------------------------------------

VALUE_FORMATS = [
    ("0t10=X", ["a"]),
    ("ff=D", ["255"]),
    ("-1=D", ["-1"]),
    ("-1=U", ["4294967295"]),
    ("-1=E", ["18446744073709551615"]),
    ("-1=e", ["-1"]),
    ("-1=J", ["ffffffffffffffff"]),
    ("-1=x", ["ffff"]),
    ("-1=d", ["-1"]),
    ("1234=B", ["34"]),
    ("0t8=o", ["010"]),
    ("0t8=O", ["010"]),
    ("-0t8=q", ["-010"]),
    ("5=R", ["101"]),
    ("0x41=c", ["A"]),
    ("0xa=C", ["\\n"]),
    ("0x22=C", ['\\"']),
    ("10=DX", ["16", "10"]),
    ("10=2D", ["16", "16"]),
    ("0=Y", ["1970", "Jan", "01", "00:00:00"]),
    ("1234=h", ["3412"]),
]


@pytest.mark.parametrize("line,expected", VALUE_FORMATS)
def test_value_formats_without_target(line: str, expected: list[str]) -> None:
    assert values(run(None, line)) == expected


def test_value_dot_moves_with_plus_and_minus() -> None:
    # '+' and '-' move dot; 'a' then shows where it is (no target: plain hex), as mdb's
    # %-16s: padded to 16 columns
    assert run(None, "10=+a") == "0x11:           \n"
    assert run(None, "10=4-a") == "0xc:            \n"


def test_zero_counts_do_nothing() -> None:
    """A count of 0 before a verb prints nothing for it (``0t`` divided by zero)."""
    ten = " " * 16 + "10".ljust(16) + "\n"
    assert run(None, "10=0tX") == ten
    assert run(None, "10=0t0r0nX") == ten
    assert run(None, "10=X0t") == ten


def test_bad_format_characters_are_one_line_errors() -> None:
    assert "unknown format character 'z'" in error_of(None, "1=z")
    assert "ends with a count" in error_of(None, "1=4")
    assert "no target" in error_of(None, "1000/X")


# -- the fixture cores: what hashcrash printed before it crashed ----------------------


def _fixture_cores() -> list[str]:
    path = USER_CORES / "expected.json"
    if not path.exists():
        return ["(fixtures absent)"]
    return sorted(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def expected(user_cores: Path) -> dict:
    return json.loads((user_cores / "expected.json").read_text())


@pytest.fixture(scope="module")
def fixture_targets(user_cores: Path) -> dict[str, Target]:
    return {}


def _target(cache: dict[str, Target], name: str) -> Target:
    if name not in cache:
        cache[name] = open_target(str(need_fixture(USER_CORES / name)), config=Config())
    return cache[name]


def _printed(core: str) -> list[int]:
    """The val of each lookup from the program's own stdout (the .out file).

    It printed them with %lu, so on i386 they are the low 32 bits of the 64-bit globals."""
    out = USER_CORES / (core.split(".")[0] + ".out")
    return [int(v) for v in re.findall(r"^lookup\(.*\) = \S+ val=(\d+)$", out.read_text(), re.M)]


@pytest.mark.parametrize("core", _fixture_cores())
def test_fixture_globals(core: str, expected: dict, fixture_targets: dict[str, Target]) -> None:
    target = _target(fixture_targets, core)
    printed = _printed(core)
    assert len(printed) == 4
    # g_vals holds the val of each lookup (or ~0), as the program printed them
    text = run(target, "g_vals/4J")
    vals = [int(v, 16) for v in values(text)]
    unsigned_long = (1 << (8 * target.arch.ptr_size)) - 1
    assert [v & unsigned_long for v in vals] == printed
    assert vals[3] == (1 << 64) - 1           # ~(uint64_t)0: not found
    # mdb's layout: the symbol alone, then its label padded to column 16, values in 16-wide columns
    row = "g_vals:".ljust(16) + "".join(f"{v:x}".ljust(16) for v in vals)
    assert text == f"g_vals:\n{row.rstrip()}\n"
    csum = next(c["result"] for c in expected[core]["calls"] if c["function"] == "chain_sum")
    assert values(run(target, "g_sum/E")) == [str(csum)]
    assert values(run(target, "g_sum/e")) == [str(csum - (1 << 64) if csum >> 63 else csum)]
    calls = [c for c in expected[core]["calls"] if c["function"] == "lookup"]
    found = [int(c["result"], 16) for c in calls]
    # K is pointer-sized: 8 bytes on x86-64/SPARC, 4 on i386
    assert [int(v, 16) for v in values(run(target, "g_found/4K"))] == found
    assert [int(v, 16) for v in values(run(target, "g_found,4/K"))] == found
    assert int(values(run(target, "g_table/K"))[0], 16) == int(calls[0]["args"][0], 16)
    # p: heap pointers have no symbol, and NULL is never named after whatever symbol sits at 0
    assert [int(v, 16) for v in values(run(target, "g_found/4p"))] == found
    assert values(run(target, "g_found/4p"))[3] == "0x0"
    assert values(run(target, "lookup+4=p")) == ["lookup+0x4"]


@pytest.mark.parametrize("core", [c for c in _fixture_cores() if "sparc" in c or "x86_64" in c])
def test_fixture_byte_order(core: str, fixture_targets: dict[str, Target]) -> None:
    """4-byte words of 8-byte values: SPARC is big-endian, so the high half comes first."""
    target = _target(fixture_targets, core)
    vals = _printed(core)
    words = [int(v, 16) for v in values(run(target, "g_vals/4X"))]
    hi_lo = [vals[0] >> 32, vals[0] & 0xFFFFFFFF, vals[1] >> 32, vals[1] & 0xFFFFFFFF]
    lo_hi = [hi_lo[1], hi_lo[0], hi_lo[3], hi_lo[2]]
    assert words == (hi_lo if target.arch.byteorder == "big" else lo_hi)
    assert target.arch.byteorder == ("big" if "sparc" in core else "little")


@pytest.mark.parametrize("core", [c for c in _fixture_cores() if "i386" in c or "sparc" in c])
def test_fixture_pipe_hands_on_values(core: str, expected: dict,
                                      fixture_targets: dict[str, Target]) -> None:
    """``g_found/K | /3K`` reads the node that lookup found: its key is the key looked up."""
    target = _target(fixture_targets, core)
    call = next(c for c in expected[core]["calls"] if c["function"] == "lookup")
    node = values(run(target, "g_found/K | /J"))
    assert int(node[0], 16) == call["args"][2]


# -- a program built here, read by pmdb and by gdb ---------------------------------------

PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct node { uint64_t key; uint64_t val; struct node *next; };

uint64_t g_arr[4] = { 0x1122334455667788ULL, 0xfedcba9876543210ULL, 0, 42 };
uint32_t g_words[4] = { 0xdeadbeef, 1, 0x80000000u, 7 };
int32_t g_neg = -5;
int16_t g_shorts[2] = { -2, 300 };
unsigned char g_bytes[4] = { 0x7f, 0x80, 0x0a, 0x41 };
char g_str[] = "hi\tthere\n";
struct node *g_table[8];
struct node *g_found;

__attribute__((noinline)) struct node *lookup(struct node **table, uint64_t n, uint64_t key)
{
    struct node *p;
    for (p = table[(key * 0x9E3779B97F4A7C15ULL >> 58) % n]; p != NULL; p = p->next)
        if (p->key == key)
            return p;
    return NULL;
}

int main(void)
{
    for (uint64_t k = 0; k < 32; k++) {
        struct node *n = malloc(sizeof *n);
        uint64_t b;
        n->key = k * 7;
        n->val = k * k;
        b = (n->key * 0x9E3779B97F4A7C15ULL >> 58) % 8;
        n->next = g_table[b];
        g_table[b] = n;
    }
    g_found = lookup(g_table, 8, 21);
    printf("%llu\n", (unsigned long long)g_found->val);
    fflush(stdout);
    *(volatile int *)0 = 1;
    return 0;
}
"""


@dataclass(frozen=True)
class Prog:
    name: str
    exe: Path
    core: Path
    m32: bool


def build_progs(root: Path) -> list[Prog]:
    """The program at -O0 and -O2 (x86-64) and -O2 (i386), cores from gcore and the kernel."""
    src = root / "fmtprog.c"
    src.write_text(PROGRAM)
    progs = []
    for opt, m32 in (("-O0", False), ("-O2", False), ("-O2", True)):
        exe = root / f"fmtprog{'-m32' if m32 else ''}{opt}"
        cmd = ["gcc", "-g", opt, "-fno-inline", "-o", str(exe), str(src)] + (["-m32"] if m32 else [])
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        hows = ["gcore"] + (["kernel"] if kernel_cores_possible() else [])
        for how in hows:
            name = f"{exe.name}-{how}"
            make = gcore_core if how == "gcore" else kernel_core
            progs.append(Prog(name, exe, make(exe, root / name, name=f"{name}.core"), m32))
    return progs


_BUILT: list[Prog] = []    # test_disasm.py uses the same cores: build them once per run


@pytest.fixture(scope="session")
def fmt_progs(tmp_path_factory: pytest.TempPathFactory) -> list[Prog]:
    if not (shutil.which("gcc") and shutil.which("gdb")):
        pytest.skip("needs gcc and gdb")
    if not _BUILT:
        _BUILT.extend(build_progs(tmp_path_factory.mktemp("fmtprog")))
    return _BUILT


@pytest.fixture(scope="session")
def prog_targets(fmt_progs: list[Prog]) -> list[tuple[Prog, Target]]:
    return [(p, open_target(str(p.core), config=Config())) for p in fmt_progs]


def test_program_memory_matches_gdb_x(prog_targets: list[tuple[Prog, Target]]) -> None:
    assert prog_targets
    for prog, target in prog_targets:
        word = "w" if prog.m32 else "g"
        sp = "esp" if prog.m32 else "rsp"
        cases = [
            ("g_arr/4K", "&g_arr", word),
            ("g_arr/4J", "&g_arr", "g"),
            ("g_words/4X", "&g_words", "w"),
            ("g_shorts/2x", "&g_shorts", "h"),
            ("g_bytes/4B", "&g_bytes", "b"),
            (f"<{sp},4/K", f"${sp}", word),
            ("g_table,8/K", "&g_table", word),
        ]
        for line, expr, unit in cases:
            ours = [int(v, 16) for v in values(run(target, line))]
            assert ours == gdb_x(prog.exe, prog.core, expr, len(ours), unit), (prog.name, line)
        # the pipe hands on g_found's value: /3J then reads the node itself
        node = [int(v, 16) for v in values(run(target, "g_found/K | /3J"))]
        assert node[:2] == [21, 9]          # key 21 is k=3: val = 3*3, from the source
        assert node == gdb_x(prog.exe, prog.core, "g_found", 3, "g")


def gdb_x(exe: Path, core: Path, expr: str, count: int, unit: str) -> list[int]:
    """gdb's ``x/<count><unit>x expr`` as integers (only its memory lines: ``0x... <sym>:``)."""
    text = gdb_batch(exe, core, [f"x/{count}{unit}x {expr}"])
    found: list[int] = []
    for line in text.splitlines():
        m = re.match(r"^0x[0-9a-f]+(?: <[^>]*>)?:\s(.*)$", line)
        if m:
            found += [int(v, 16) for v in m.group(1).split()]
    return found


def _gdb_print(prog: Prog, expr: str) -> str:
    text = gdb_batch(prog.exe, prog.core, [f"print {expr}"])
    m = re.search(r"^\$\d+ = (.*)$", text, re.M)
    assert m, text
    return m.group(1)


def test_program_decimal_and_strings_match_gdb(prog_targets: list[tuple[Prog, Target]]) -> None:
    for prog, target in prog_targets:
        assert values(run(target, "g_neg/D")) == [_gdb_print(prog, "g_neg")]
        assert values(run(target, "g_neg/U")) == [_gdb_print(prog, "(unsigned)g_neg")]
        shorts = _gdb_print(prog, "g_shorts")       # {-2, 300}
        assert values(run(target, "g_shorts/2d")) == re.findall(r"-?\d+", shorts)
        assert values(run(target, "g_words/4U")) == re.findall(r"\d+", _gdb_print(prog, "g_words"))
        # S: C notation, the same escapes gdb uses in a string
        assert run(target, "g_str/S").split(None, 2)[2].strip() == _gdb_print(prog, "g_str").strip('"')
        raw = run(target, "g_str/s")          # s: the bytes as they are, a real tab
        assert raw.startswith("g_str:\n") and raw.split(None, 2)[2].rstrip("\n") == "hi\tthere"
        assert values(run(target, "g_bytes/4C")) == ["\\177\\200\\nA"]


def test_program_symbolic_formats(prog_targets: list[tuple[Prog, Target]]) -> None:
    for _, target in prog_targets:
        # p names a pointer's target; a names dot itself
        assert values(run(target, "g_found=p")) == ["g_found"]
        assert run(target, "g_arr+8=a") == "g_arr+0x8:      \n"     # %-16s, as mdb
        # a repeat count continues where the format stopped: the next address comes back
        session = Session(target, stdout=io.StringIO(), stderr=io.StringIO())
        assert session.run_line("g_arr/2J")
        assert session.next_dot == target.symbols.lookup("g_arr").addr + 16  # type: ignore[union-attr]


def test_unreadable_address_is_one_line(prog_targets: list[tuple[Prog, Target]]) -> None:
    _, target = prog_targets[0]
    out, err = io.StringIO(), io.StringIO()
    assert not Session(target, stdout=out, stderr=err).run_line("0/K")
    assert err.getvalue().count("\n") == 1 and "0x0" in err.getvalue()
    assert out.getvalue() == ""               # no orphan label before the error
