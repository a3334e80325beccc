"""::print on the fixture cores (every architecture, big-endian SPARC too) and the printer's edge cases.

The fixture cores are checked against expected.json (values the program computed
natively before it crashed). Small hand-built types over synthetic memory pin
down what real programs rarely show: big-endian bitfields, unreadable members,
array limits, flag enums, malformed member paths and corrupt lists.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.errors import CommandError, CorruptionError, FaultError, SymbolError
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.opener import open_target
from pmdb.session import Session
from pmdb.types.lists import walk_list
from pmdb.types.model import Member, Type
from pmdb.types.printer import PrintOptions, format_object
from pmdb.types.value import Object, follow_path, split_path, take_type
from tests.conftest import USER_CORES, need_fixture

EXPECTED = USER_CORES / "expected.json"
CORES = sorted(json.loads(EXPECTED.read_text())) if EXPECTED.exists() else ["hashcrash-x86_64-O2.core"]


class Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def space(data: bytes, base: int = 0x1000, order: str = "little", ptr: int = 8) -> SegmentedSpace:
    return SegmentedSpace([Segment(base, len(data), Bytes(data))], order, ptr)


U8 = Type("int", "unsigned char", 1)
U32 = Type("int", "unsigned int", 4)
I32 = Type("int", "int", 4, signed=True)
U64 = Type("int", "uint64_t", 8)
CHAR = Type("int", "char", 1, signed=True)


def _run(core: Path, *lines: str) -> list[tuple[str, str]]:
    target = open_target(str(core), config=Config())
    results = []
    for line in lines:
        out, err = io.StringIO(), io.StringIO()
        Session(target, stdout=out, stderr=err).run_line(line)
        results.append((out.getvalue(), err.getvalue()))
    return results


def _hex_list(text: str) -> list[int]:
    return [int(v, 16) for v in re.findall(r"0x[0-9a-f]+|\b0\b", text)]


# -- the fixture cores: values the program computed before crashing --------------------------

@pytest.mark.parametrize("core", CORES)
def test_globals_read_back_as_computed(user_cores: Path, core: str) -> None:
    exp = json.loads((user_cores / "expected.json").read_text())[core]
    lookups = [c for c in exp["calls"] if c["function"] == "lookup"]
    chain = next(c for c in exp["calls"] if c["function"] == "chain_sum")
    table = int(lookups[0]["args"][0], 16)
    found = [int(c["result"], 16) for c in lookups]
    (tab, e1), (fnd, e2), (s, e3), (key, e4), (node, e5) = _run(
        need_fixture(user_cores / core), "::print g_table", "::print g_found", "::print g_sum",
        "::print g_found[2]->key", f"{found[0]:#x}::print struct node")
    assert e1 == e2 == e3 == e4 == e5 == ""
    assert _hex_list(tab) == [table]
    assert fnd.startswith("[ ") and _hex_list(fnd) == found
    assert _hex_list(s) == [chain["result"]]
    assert key.startswith("g_found[2]->key = ") and _hex_list(key) == [lookups[2]["args"][2]]
    # a node: one member per line, four columns in, as mdb prints it
    lines = node.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert [ln.split(" = ")[0] for ln in lines[1:-1]] == ["    key", "    val", "    next"]
    assert _hex_list(lines[1]) == [lookups[0]["args"][2]]


def test_piped_print_hands_on_the_pointed_to_node(user_cores: Path) -> None:
    core = "hashcrash-x86_64-O2.core"
    exp = json.loads((user_cores / "expected.json").read_text())[core]
    found = [int(c["result"], 16) for c in exp["calls"] if c["function"] == "lookup"]
    [(out, err)] = _run(need_fixture(user_cores / core), "::print g_found[1] | ::print key")
    assert err == "" and out.startswith("key = ") and _hex_list(out) == [6996]
    [(out, err)] = _run(user_cores / core, "g_found::print struct node * | ::print -a key")
    assert err == "" and out.split()[0] == f"{found[0]:x}"


# -- formatting rules ----------------------------------------------------------------------------

def _pair_type() -> Type:
    inner = Type("struct", "inner", 8, _members=[Member("a", U32, 0), Member("b", I32, 32)])
    return Type("struct", "outer", 32, _members=[
        Member("id", U64, 0), Member("in", inner, 64), Member("tag", Type("array", "", 4, count=4, _target=CHAR), 128),
        Member("p", Type("pointer", "", 8, _target=CHAR), 192)])


def test_nested_struct_layout() -> None:
    data = (7).to_bytes(8, "little") + (0).to_bytes(4, "little") + (-2).to_bytes(4, "little", signed=True) \
        + b"ab\0\0" + bytes(4) + (0x1020).to_bytes(8, "little") + b"hi\0"
    obj = Object(space(data), _pair_type(), 0x1000)
    assert format_object(obj) == "\n".join([
        "{", "    id = 0x7", "    in = {", "        a = 0", "        b = 0xfffffffe", "    }",
        '    tag = [ "ab" ]', '    p = 0x1020 "hi"', "}"])
    assert format_object(obj, PrintOptions(show_addrs=True), name=None).splitlines()[2] == "    1008 in = {"
    assert format_object(follow_path(obj, "in.b"), name="in.b") == "in.b = 0xfffffffe"


def test_unreadable_member_marks_one_cell() -> None:
    t = Type("struct", "s", 16, _members=[Member("a", U64, 0), Member("b", U64, 64)])
    obj = Object(space((5).to_bytes(8, "little")), t, 0x1000)
    assert format_object(obj).splitlines() == ["{", "    a = 0x5", "    b = <unreadable 0x1008>", "}"]


def test_bitfields_little_and_big_endian() -> None:
    # struct { unsigned a:3, b:5; signed c:4; }: a=5, b=9, c=-3
    t = Type("struct", "bits", 4, _members=[Member("a", U32, 0, 3), Member("b", U32, 3, 5),
                                            Member("c", I32, 8, 4)])
    little = Object(space(bytes([5 | 9 << 3, 0xD]), order="little"), t, 0x1000)
    big = Object(space(bytes([5 << 5 | 9, 0xD << 4]), order="big"), t, 0x1000)
    for obj in (little, big):
        assert [int(obj.member(n)) for n in "abc"] == [5, 9, -3]
        assert format_object(obj).splitlines()[1:4] == ["    a = 0x5", "    b = 0x9", "    c = 0t-3"]


def test_arrays_chars_and_limits() -> None:
    blob = bytes(range(1, 200))
    arr = Type("array", "", 150, count=150, _target=U8)
    text = format_object(Object(space(blob), arr, 0x1000))
    assert text.startswith("[ '\\001', '\\002'") and text.endswith(", ... ]") and text.count(", ") == 100
    grid = Type("array", "", 16, count=2, _target=Type("array", "", 8, count=2, _target=U32))
    data = b"".join(i.to_bytes(4, "little") for i in (1, 2, 3, 4))
    assert format_object(Object(space(data), grid, 0x1000)) == "[ [ 0x1, 0x2 ], [ 0x3, 0x4 ] ]"


def test_enums() -> None:
    color = Type("enum", "color", 4, signed=True, _enumerators=[("RED", 0), ("BLUE", -2)])
    flags = Type("enum", "fl", 4, _enumerators=[("F_A", 1), ("F_B", 2), ("F_C", 4)])
    assert format_object(Object(space((-2).to_bytes(4, "little", signed=True)), color, 0x1000)) == "0t-2 (BLUE)"
    assert format_object(Object(space((7).to_bytes(4, "little")), color, 0x1000)) == "0t7 (???)"
    assert format_object(Object(space((5).to_bytes(4, "little")), flags, 0x1000)) == "0x5 (F_A|F_C)"
    assert format_object(Object(space((9).to_bytes(4, "little")), flags, 0x1000)) == "0x9 (F_A|0x8)"


# -- bad input -----------------------------------------------------------------------------------

def test_member_paths_and_errors() -> None:
    assert split_path("a.b[0t10]->c[1f]") == [("member", "a"), ("member", "b"), ("index", 10),
                                              ("member", "c"), ("index", 0x1f)]
    with pytest.raises(CommandError):
        split_path("a..b$")
    obj = Object(space(bytes(32)), _pair_type(), 0x1000)
    with pytest.raises(SymbolError, match="no member 'zz'"):
        follow_path(obj, "in.zz")
    with pytest.raises(CommandError, match="out of range"):
        follow_path(obj, "tag[4]")
    with pytest.raises(FaultError, match="NULL"):
        follow_path(obj, "p").deref()   # p is 0 in zeroed memory
    assert take_type(["struct", "node", "*", "next"]) == ("struct node *", ["next"])
    assert take_type(["unsigned", "long", "x"]) == ("unsigned long", ["x"])
    assert take_type(["node_t", "*[4]"]) == ("node_t *[4]", [])


def test_lists_end_at_null_or_start_and_catch_loops() -> None:
    def ring(nexts: list[int]) -> SegmentedSpace:
        return space(b"".join((0x1000 + 16 * n if n >= 0 else 0).to_bytes(8, "little") + bytes(8)
                              for n in nexts))
    assert list(walk_list(ring([1, 2, -1]), 0x1000, 0)) == [0x1000, 0x1010, 0x1020]
    assert list(walk_list(ring([1, 2, 0]), 0x1000, 0)) == [0x1000, 0x1010, 0x1020]
    seen = []
    with pytest.raises(CorruptionError, match="loops back to 0x1010"):
        for node in walk_list(ring([1, 2, 1]), 0x1000, 0):
            seen.append(node)
    assert seen == [0x1000, 0x1010, 0x1020]
    with pytest.raises(CorruptionError, match="longer than 2 nodes"):
        list(walk_list(ring([1, 2, -1]), 0x1000, 0, limit=2))
    with pytest.raises(CorruptionError, match="cannot read the next pointer"):
        list(walk_list(ring([1, 2, -1]), 0x1000, 0x100))
