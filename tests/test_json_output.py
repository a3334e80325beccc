"""The output layer: --json over a whole run, one encoding of addresses, rich on a terminal,
and an unreadable cell that marks one cell instead of failing its table.

Oracles: crash's ps and sys on the same dump (the fixture's crash output) and
pmdb's own plain rendering, which the golden tests hold to crash's text.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from typing import Any

from pmdb.output import Column, Hex, Output, Unreadable
from pmdb.session import Session
from tests.conftest import need_fixture
from tests.linux_session import crash_ps, target_for
from tests.linux_vmcore import KASLR, README

DUMP = "dump.202611221942"
LINE = "::status; ::ps; $c; ::kmastat; init_task::print task_struct pid comm"
# keys whose values are addresses in the records of these commands
ADDRESS_KEYS = {"TASK", "task", "frame", "pc", "sp", "cache", "address"}
HEX = re.compile(r"^0x[0-9a-f]+$")
BARE_HEX = re.compile(r"^[0-9a-f]{12,16}$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _values(node: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (key, value) of a JSON tree, leaves and inner nodes alike."""
    out = [(key, node)]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _values(v, k)
    elif isinstance(node, list):
        for v in node:
            out += _values(v, key)
    return out


def test_json_run_is_one_object_per_command_with_one_address_encoding() -> None:
    dump = need_fixture(KASLR / DUMP)
    r = subprocess.run([sys.executable, "-m", "pmdb", "-q", "--json", str(dump), "-e", LINE],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    objects = [json.loads(line) for line in r.stdout.splitlines()]      # JSON Lines
    assert [o["command"] for o in objects] == [c.strip() for c in LINE.split(";")]
    status, ps, stack, kmastat, printed = (o["records"] for o in objects)
    # every address is a "0x..." string, never a number or bare hex digits
    checked = 0
    for key, value in _values(objects):
        if key in ADDRESS_KEYS and not isinstance(value, dict | list):
            assert isinstance(value, str) and HEX.match(value), (key, value)
            checked += 1
        assert not (isinstance(value, str) and BARE_HEX.match(value)), (key, value)
        assert not (isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 47), (key, value)
    assert checked > 100
    # the values are the oracle's
    assert int(status[0]["TASK"], 16) == README[KASLR]["panic_task"]
    assert [(p["pid"], int(p["task"], 16), p["state"]) for p in ps] == \
        [(c.pid, c.task, c.state) for c in crash_ps(KASLR)]
    assert all(int(s["task"], 16) == README[KASLR]["panic_task"] for s in stack)
    assert len(kmastat) > 50 and all(k["total"] >= k["inuse"] for k in kmastat)
    assert [(p["name"], p["value"]) for p in printed] == [("pid", 0), ("comm", "swapper/0")]


def test_json_stack_is_the_text_stack() -> None:
    """$c's records carry the frames its text shows, in order."""
    target = target_for(KASLR, DUMP)
    text, js = io.StringIO(), io.StringIO()
    Session(target, stdout=text).run_line("$c")
    Session(target, stdout=js, json_mode=True).run_line("$c")
    records = json.loads(js.getvalue())["records"]
    assert [r["function"] for r in records] == text.getvalue().splitlines()


def test_print_member_tree_nests_members() -> None:
    target = target_for(KASLR, DUMP)
    out = io.StringIO()
    Session(target, stdout=out, json_mode=True).run_line("init_task::print task_struct se.load")
    (node,) = json.loads(out.getvalue())["records"]
    assert node["name"] == "se.load" and node["type"] == "struct load_weight"
    members = {m["name"]: m for m in node["members"]}
    assert set(members) >= {"weight", "inv_weight"}
    assert int(members["weight"]["address"], 16) == int(node["address"], 16)


def test_unreadable_cell_marks_one_cell() -> None:
    columns = (Column("addr", "ADDR"), Column("value", "VALUE"), Column("name", "NAME"))
    rows = [[Hex(0x1000), Unreadable(0x970), "first"], [Hex(0x2000), 7, "second"]]
    text = io.StringIO()
    Output(text, color=False).table(columns, rows)
    assert text.getvalue().splitlines() == ["ADDR VALUE              NAME",
                                            "1000 <unreadable 0x970> first",
                                            "2000 7                  second"]
    js = io.StringIO()
    out = Output(js, json_mode=True, command="t")
    out.table(columns, rows)
    out.flush()
    records = json.loads(js.getvalue())["records"]
    assert records == [{"addr": "0x1000", "value": {"unreadable": "0x970"}, "name": "first"},
                       {"addr": "0x2000", "value": 7, "name": "second"}]


def test_unreadable_member_in_print() -> None:
    """An object at an unmapped address: each member is one unreadable cell, in both forms."""
    target = target_for(KASLR, DUMP)
    text, js = io.StringIO(), io.StringIO()
    Session(target, stdout=text, stderr=io.StringIO()).run_line("0::print task_struct pid comm")
    Session(target, stdout=js, json_mode=True, stderr=io.StringIO()).run_line("0::print task_struct pid comm")
    records = json.loads(js.getvalue())["records"]
    assert [r["value"]["unreadable"] for r in records] == [r["address"] for r in records]
    assert text.getvalue().splitlines() == [f"{r['name']} = <unreadable {r['address']}>" for r in records]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_rendering_is_rich_and_keeps_the_layout() -> None:
    """On a terminal the table goes through rich (colored by cell type, bold header); less
    the colors it is the piped text, so crash's layouts stay crash's."""
    columns = (Column("addr", "ADDR", ">"), Column("name", "NAME"))
    rows = [[Hex(0xFFFF), "init"], [Hex(0x1), "kthreadd"]]
    tty, plain = _Terminal(), io.StringIO()
    Output(tty).table(columns, rows)
    Output(plain).table(columns, rows)
    assert "\x1b[1m" in tty.getvalue() and "\x1b[36mffff\x1b[0m" in tty.getvalue()
    assert ANSI.sub("", tty.getvalue()) == plain.getvalue()
    target = target_for(KASLR, DUMP)
    tty, plain = _Terminal(), io.StringIO()
    Session(target, stdout=tty).run_line("::ps")
    Session(target, stdout=plain).run_line("::ps")
    assert "\x1b[36m" in tty.getvalue()
    assert ANSI.sub("", tty.getvalue()) == plain.getvalue()


def test_json_names_the_failed_command_and_its_error() -> None:
    target = target_for(KASLR, DUMP)
    out = io.StringIO()
    Session(target, stdout=out, stderr=io.StringIO(), json_mode=True).run_line("::ps; ::nosuch; ::ps -k")
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["command"] for o in objects] == ["::ps", "::nosuch", "::ps -k"]
    assert objects[1]["records"] == [] and "nosuch" in objects[1]["errors"][0]
    assert all(r["kernel_thread"] for r in objects[2]["records"])
