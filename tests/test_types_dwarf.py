"""DWARF types on real cores, with gdb as the oracle.

A C program with a global struct of every kind of member (nested struct,
arrays of scalars and structs, a 2-D array, bitfields, enums, a union, an
anonymous union, pointers, a function pointer) is built with gcc -g at -O0 and
-O2 and crashed; the kernel (or gdb's gcore) writes its core. ``::print`` of the
global must show the members and values gdb's Python API reads, and ``::sizeof``
/ ``::offsetof`` must equal gdb's ``sizeof`` and ``&((T *)0)->m``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.target import Target
from tests.cores import gcore_core, gdb_batch, kernel_core, kernel_cores_possible, need_tools

PROGRAM = r"""
#include <stdint.h>
#include <string.h>

enum color { RED, GREEN = 5, BLUE = -2 };
enum flags { F_A = 1, F_B = 2, F_C = 4, F_D = 8 };
typedef unsigned short u16;

struct inner { int x; char tag[6]; u16 w; };
union pun { uint32_t u; float f; unsigned char b[4]; };
struct node { long key; struct node *next; };

struct big {
    int id;
    struct inner in;
    struct inner arr_in[2];
    int grid[2][3];
    unsigned int lo : 3, mid : 7;
    signed int neg : 5;
    unsigned long long wide : 40;
    enum color col;
    enum flags fl;
    union pun pun;
    struct node *head;
    const char *name;
    char label[16];
    double ratio;
    void (*fn)(void);
    struct { int a; short b; } anon_typed;
    union { int ui; char uc; };
    uint8_t bytes[3];
    _Bool ok;
    long minus;
};

struct big g_big;
struct node g_nodes[3];
struct node g_cycle[3];

__attribute__((noinline)) void helper(void) { __asm__ volatile(""); }

int *volatile g_bad;   /* a NULL the compiler cannot see through */

__attribute__((noinline)) static void crash(void) { *g_bad = 1; }

int main(void)
{
    g_big.id = 0x1234;
    g_big.in.x = -7;
    strcpy(g_big.in.tag, "inner");
    g_big.in.w = 0xbeef;
    for (int i = 0; i < 2; i++) {
        g_big.arr_in[i].x = 100 + i;
        g_big.arr_in[i].tag[0] = 'a' + i;
        g_big.arr_in[i].w = 7 * i;
    }
    for (int i = 0; i < 6; i++)
        g_big.grid[i / 3][i % 3] = i * i - 3;
    g_big.lo = 5; g_big.mid = 99; g_big.neg = -3; g_big.wide = 0x12345678ABULL;
    g_big.col = BLUE;
    g_big.fl = F_A | F_C;
    g_big.pun.u = 0x41424344;
    g_big.head = &g_nodes[0];
    g_big.name = "a static string";
    strcpy(g_big.label, "label\x01x");
    g_big.ratio = 2.75;
    g_big.fn = helper;
    g_big.anon_typed.a = -1; g_big.anon_typed.b = 300;
    g_big.ui = 0x7a;
    g_big.bytes[0] = 1; g_big.bytes[1] = 0; g_big.bytes[2] = 3;
    g_big.ok = 1;
    g_big.minus = -2;
    for (int i = 0; i < 3; i++) {
        g_nodes[i].key = 10 * (i + 1);
        g_nodes[i].next = i < 2 ? &g_nodes[i + 1] : 0;
        g_cycle[i].key = i;
    }
    g_cycle[0].next = &g_cycle[1]; g_cycle[1].next = &g_cycle[2]; g_cycle[2].next = &g_cycle[1];
    crash();
    return 0;
}
"""

# gdb walks g_big (and measures the types) through its Python API; the answer is one JSON line
ORACLE = r"""
import gdb, json
C = gdb
def charish(t):
    t = t.strip_typedefs()
    return t.code in (C.TYPE_CODE_INT, C.TYPE_CODE_CHAR) and t.sizeof == 1
def walk(v, path, out, bits=0):
    t = v.type.strip_typedefs()
    if t.code in (C.TYPE_CODE_STRUCT, C.TYPE_CODE_UNION):
        for f in t.fields():
            sub = v[f]
            walk(sub, (path + "." + f.name if path else f.name) if f.name else path, out, f.bitsize)
    elif t.code == C.TYPE_CODE_ARRAY:
        lo, hi = t.range()
        if charish(t.target()):
            raw = bytes(int(v[i]) & 0xff for i in range(lo, hi + 1))
            out[path] = ["str", raw.split(b"\0")[0].decode("latin-1")]
        else:
            for i in range(lo, hi + 1):
                walk(v[i], "%s[%d]" % (path, i), out)
    elif t.code == C.TYPE_CODE_FLT:
        out[path] = ["float", float(v)]
    elif t.code == C.TYPE_CODE_PTR:
        out[path] = ["int", int(v), t.sizeof * 8]
    else:
        out[path] = ["int", int(v), bits or t.sizeof * 8]
out = {}
walk(gdb.parse_and_eval("g_big"), "", out)
sizes = {n: int(gdb.parse_and_eval("sizeof(%s)" % n)) for n in
         ["struct big", "struct inner", "union pun", "struct node", "enum color", "u16"]}
offs = {m: int(gdb.parse_and_eval("(unsigned long)&((struct big *)0)->%s" % m)) for m in
        ["in", "in.tag", "arr_in", "arr_in[1].w", "grid", "grid[1][2]", "col", "fl", "pun", "head",
         "name", "label", "ratio", "fn", "anon_typed.b", "ui", "uc", "bytes", "ok", "minus"]}
nodes = [int(gdb.parse_and_eval("(unsigned long)&g_nodes[%d]" % i)) for i in range(3)]
cycle = [int(gdb.parse_and_eval("(unsigned long)&g_cycle[%d]" % i)) for i in range(3)]
print("PMDB-TYPES:" + json.dumps({"values": out, "sizes": sizes, "offsets": offs,
                                   "nodes": nodes, "cycle": cycle}))
"""

VARIANTS = [("x86_64", "-O0"), ("x86_64", "-O2"), ("i386", "-O2")]


def _build(root: Path, arch: str, opt: str) -> tuple[Path, Path]:
    src = root / "types.c"
    src.write_text(PROGRAM)
    exe = root / f"types-{arch}{opt}"
    cmd = ["gcc", "-g", opt, "-o", str(exe), str(src)] + (["-m32"] if arch == "i386" else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        if arch == "i386":
            pytest.skip(f"gcc -m32 unavailable: {proc.stderr[-200:]}")
        raise RuntimeError(proc.stderr)
    make = kernel_core if kernel_cores_possible() else gcore_core
    return exe, make(exe, root / f"run-{arch}{opt}", name=f"types-{arch}{opt}.core")


def _gdb_oracle(exe: Path, core: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ORACLE)
    try:
        text = gdb_batch(exe, core, [f"source {f.name}"])
    finally:
        os.unlink(f.name)
    for line in text.splitlines():
        if line.startswith("PMDB-TYPES:"):
            return json.loads(line[len("PMDB-TYPES:"):])
    raise RuntimeError(f"no gdb oracle output: {text[-500:]}")


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}{v[1]}")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_tools("gcc", "gdb")
    arch, opt = request.param
    exe, core = _build(tmp_path_factory.mktemp(f"types-{arch}{opt}"), arch, opt)
    return {"exe": exe, "core": core, "oracle": _gdb_oracle(exe, core)}


def _open(built: dict[str, Any]) -> Target:
    return open_target(str(built["core"]), config=Config(), symbol_files=[str(built["exe"])])


def _run(target: Target, line: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    Session(target, stdout=out, stderr=err).run_line(line)
    return out.getvalue(), err.getvalue()


# -- reading ::print output back into paths and values -----------------------------------------

def _split_top(text: str) -> list[str]:
    """The elements of ``[ a, [ b, c ], d ]`` at the top bracket level."""
    inner = text.strip()[1:-1].strip()
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


_CHAR_ESCAPES = {"\\0": 0, "\\t": 9, "\\n": 10, "\\r": 13, "\\'": 39, "\\\\": 92}


def _char(text: str) -> int:
    body = text[1:-1]
    if body in _CHAR_ESCAPES:
        return _CHAR_ESCAPES[body]
    if body.startswith("\\"):
        return int(body[1:], 8)
    return ord(body)


def _scalar(text: str, target: Target) -> Any:
    text = text.strip()
    if m := re.fullmatch(r'\[ "(.*)" \]', text):
        return ("str", m.group(1))
    if text.startswith("["):
        elems = _split_top(text)
        if all(e.startswith("'") for e in elems):
            raw = bytes(_char(e) for e in elems)
            return ("str", raw.split(b"\0")[0].decode("latin-1"))
        return ("list", [_scalar(e, target) for e in elems])
    if text.startswith("'"):
        return ("int", _char(text))
    text = re.sub(r' \(.*\)$', "", text)          # enum names
    text = re.sub(r' ".*"$', "", text)            # the string after a char *
    if m := re.fullmatch(r"0t(-?\d+)", text):
        return ("int", int(m.group(1)))
    if re.fullmatch(r"0x[0-9a-f]+|0", text):
        return ("int", int(text, 16))
    if re.fullmatch(r"-?\d\.\d+e[+-]\d+", text):
        return ("float", float(text))
    name, _, off = text.partition("+")
    sym = target.symbols.lookup(name.split("`")[-1])
    assert sym is not None, f"cannot read value {text!r}"
    return ("int", sym.addr + (int(off, 16) if off else 0))


def flatten(text: str, target: Target) -> dict[str, Any]:
    """``::print`` output as {member path: value}, anonymous members flattened as gdb names them."""
    lines = text.splitlines()
    out: dict[str, Any] = {}
    pos = 0

    def put(path: str, value: Any) -> None:
        if value[0] == "list":
            for i, v in enumerate(value[1]):
                put(f"{path}[{i}]", v)
        else:
            out[path] = value

    def struct(path: str) -> None:
        nonlocal pos
        while True:
            line = lines[pos].strip()
            pos += 1
            if line in ("}", "},"):
                return
            if line == "{":
                struct(path)
                continue
            name, value = line.split(" = ", 1)
            value_at(f"{path}.{name}" if path else name, value)

    def value_at(path: str, value: str) -> None:
        nonlocal pos
        if value == "{":
            struct(path)
        elif value == "[":
            i = 0
            while lines[pos].strip() != "]":
                assert lines[pos].strip() == "{", lines[pos]
                pos += 1
                struct(f"{path}[{i}]")
                i += 1
            pos += 1
        else:
            put(path, _scalar(value, target))

    first = lines[pos]
    pos += 1
    value_at("", first)
    return out


def _same(mine: Any, gdbs: list[Any]) -> bool:
    kind = gdbs[0]
    if kind == "str":
        return mine == ("str", gdbs[1])
    if kind == "float":
        return mine[0] == "float" and math.isclose(mine[1], gdbs[1], rel_tol=1e-6)
    mask = (1 << gdbs[2]) - 1
    return mine[0] == "int" and (mine[1] & mask) == (gdbs[1] & mask)


# -- tests ---------------------------------------------------------------------------------------

def test_opening_parses_no_dwarf(built: dict[str, Any]) -> None:
    target = _open(built)
    source = target.types.sources[0]
    assert source.parsed_cus == 0
    out, err = _run(target, "::nm -f g_big")
    assert err == "" and "g_big" in out
    assert source.parsed_cus == 0          # symbols come from the symtab, not from DWARF
    out, err = _run(target, "::sizeof struct node")
    assert err == "" and source.parsed_cus > 0


@pytest.mark.parametrize("line", ["::print g_big", "g_big::print", "g_big::print struct big",
                                  "g_big::print -t struct big"])
def test_print_global_matches_gdb(built: dict[str, Any], line: str) -> None:
    target = _open(built)
    out, err = _run(target, line)
    assert err == ""
    if "-t" in line:
        # types go before names; drop them so the values read as without -t
        out = "\n".join(re.sub(r"^(\s*)\S.*?(\w+)( :\d+)? = ", r"\1\2 = ", ln) if " = " in ln
                        else re.sub(r"^(\s*)(struct|union) \S+ \{$", r"\1{", ln) for ln in out.splitlines())
    mine = flatten(out, target)
    want = built["oracle"]["values"]
    assert sorted(mine) == sorted(want)
    bad = {p: (mine[p], want[p]) for p in want if not _same(mine[p], want[p])}
    assert not bad


@pytest.mark.parametrize("path", ["in.tag", "arr_in[1].w", "grid[1][2]", "neg", "wide", "col", "fl",
                                  "pun.b", "uc", "head->next->key", "name", "ratio", "minus"])
def test_print_member_paths(built: dict[str, Any], path: str) -> None:
    target = _open(built)
    out, err = _run(target, f"g_big::print struct big {path}")
    assert err == ""
    name, value = out.rstrip("\n").split(" = ", 1)
    assert name == path
    if path == "head->next->key":
        assert _scalar(value, target) == ("int", 20)      # the program set g_nodes[1].key = 20
        return
    assert _same(_scalar(value, target), built["oracle"]["values"][path.replace("pun.b", "pun.b")])


def test_sizeof_and_offsetof_match_gdb(built: dict[str, Any]) -> None:
    target = _open(built)
    for spelling, size in built["oracle"]["sizes"].items():
        out, err = _run(target, f"::sizeof {spelling}")
        shown = str(size) if size < 10 else f"{size:#x}"     # mdb's %#r: no 0x below 10
        assert (out, err) == (f"sizeof ({spelling}) = {shown}\n", "")
    for member, off in built["oracle"]["offsets"].items():
        out, err = _run(target, f"::offsetof struct big {member}")
        assert err == ""
        assert re.match(rf"offsetof \(struct big, {re.escape(member)}\) = {off:#x}(,|$)", out.strip()), out


def test_list_follows_next_pointers(built: dict[str, Any]) -> None:
    target = _open(built)
    nodes = built["oracle"]["nodes"]
    for line in ("g_nodes::list struct node next", "g_nodes::walk list struct node next",
                 "g_nodes::print struct node | ::walk list next"):
        out, err = _run(target, line)
        assert err == "" and [int(x, 16) for x in out.split()] == nodes, line


def test_cyclic_list_is_corruption(built: dict[str, Any]) -> None:
    target = _open(built)
    cycle = built["oracle"]["cycle"]
    for line in ("g_cycle::list struct node next", "g_cycle::walk list struct node next"):
        out, err = _run(target, line)
        assert [int(x, 16) for x in out.split()] == cycle
        assert err.count("\n") == 1 and err.startswith(f"pmdb: corrupt data at {cycle[1]:#x}")


def test_bad_names_give_one_line(built: dict[str, Any]) -> None:
    target = _open(built)
    cases = {"::sizeof struct nosuch": "pmdb: unknown type 'struct nosuch'",
             "g_big::print nosuch_t": "pmdb: 'nosuch_t' is neither a type nor a member of struct big",
             "g_big::print struct nosuch": "pmdb: unknown type 'struct nosuch'",
             "g_big::print struct big nosuch": "pmdb: struct big has no member 'nosuch'",
             "::offsetof struct big in.nosuch": "pmdb: struct inner has no member 'nosuch'",
             "g_big::list struct big id": "pmdb: id of struct big is neither a pointer nor a list_head (it is int)"}
    for line, message in cases.items():
        out, err = _run(target, line)
        assert (out, err) == ("", message + "\n"), line
