"""Lists: mdb's ::list and ::walk list and crash's list, on the 6.1 fixture dumps.

The oracles are crash 8.0.6's own answers in the fixtures' crash-oracle.txt: ps lists
every task's address, pid and command (the task list), mod every module's address (the
``modules`` list_head); and the kernel's struct layout: ``tasks`` is a list_head, so a
walk through it (or through ``tasks.next``) must land on task addresses, not inside them.
"""

from __future__ import annotations

import re

import pytest

from pmdb.errors import CorruptionError
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.types.lists import ListLink, walk_list
from tests.linux_session import KASLR, crash_ps, run, target_for
from tests.linux_vmcore import crash_section

DUMP = "dump.202611221942"


def _task_order() -> list[int]:
    """Task addresses in task-list order: crash's ps rows (by pid) without the idle tasks
    of other CPUs and without threads, which are not on init_task.tasks."""
    return [r.task for r in crash_ps(KASLR)]


def _hexes(text: str) -> list[int]:
    return [int(w, 16) for w in re.findall(r"^([0-9a-f]{16})$", text, re.M)]


@pytest.mark.parametrize("line", ["init_task::list task_struct tasks",
                                  "init_task::walk list task_struct tasks.next",
                                  "list task_struct.tasks -h init_task",
                                  "list -h init_task 0t2192"])
def test_task_list_by_every_spelling(line: str) -> None:
    t = target_for(KASLR, DUMP)
    out, err = run(t, line)
    assert not err
    walked = _hexes(out)
    tasks = set(_task_order())
    assert walked[0] == t.symbols.lookup("init_task").addr      # type: ignore[union-attr]
    assert len(walked) > 50 and set(walked) <= tasks, sorted(set(walked) - tasks)[:3]
    assert len(set(walked)) == len(walked)


def test_crash_list_show_members_equals_crash_ps() -> None:
    t = target_for(KASLR, DUMP)
    out, err = run(t, "list task_struct.tasks -s task_struct.pid,comm -h init_task")
    assert not err
    got = re.findall(r"^([0-9a-f]{16})\n  pid = (\d+),\n  comm = \"([^\"\\\\]*)", out, re.M)
    by_task = {r.task: r for r in crash_ps(KASLR)}
    assert len(got) > 50
    for addr, pid, comm in got:
        row = by_task[int(addr, 16)]
        assert (int(pid), comm) == (row.pid, row.comm.strip("[]"))   # ps brackets kthreads


def test_crash_list_of_modules_equals_crash_mod() -> None:
    t = target_for(KASLR, DUMP)
    names = {int(line.split()[0], 16): line.split()[1] for line in crash_section(KASLR, "mod")[1:]}
    out, _ = run(t, "list -H modules module.list")
    assert sorted(_hexes(out)) == sorted(names)
    backwards, _ = run(t, "list -r -H modules module.list")
    assert _hexes(backwards) == _hexes(out)[::-1]
    shown, _ = run(t, "list -H modules module.list -s module.name")
    assert re.findall(r'name = "(\w+)', shown) == [names[a] for a in _hexes(out)]


def test_list_errors_are_one_line() -> None:
    t = target_for(KASLR, DUMP)
    for line in ("list -H", "list -H -h modules", "list -r modules", "list nosuch.member -h init_task"):
        out, err = run(t, line)
        assert err.count("\n") == 1 and "internal error" not in err, (line, err)


class Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def _space(words: list[int]) -> SegmentedSpace:
    data = b"".join(w.to_bytes(8, "little") for w in words)
    return SegmentedSpace([Segment(0xFF0, 16 + len(data), Bytes(bytes(16) + data))])


def test_walk_list_head_and_container_of() -> None:
    # a standalone head at 0x1000 and three 32-byte entries whose list_head is at +16
    head, entries = 0x1000, [0x1010, 0x1030, 0x1050]
    words = [0] * 14
    links = [e + 16 for e in entries]
    chain = [head, *links, head]
    for here, nxt in zip(chain, chain[1:], strict=False):
        words[(here - 0x1000) // 8] = nxt
    mem = _space(words)
    link = ListLink(16, 16)
    assert list(walk_list(mem, head, link, head=head)) == entries
    # from an entry (crash's -h) the walk passes through the standalone head, shown as the
    # bogus entry it would be (crash's help warns of the same), and ends back at the start
    assert list(walk_list(mem, entries[1], link)) == [entries[1], entries[2], head - 16, entries[0]]
    words[(links[2] - 0x1000) // 8] = links[0]         # the last entry points at the first
    with pytest.raises(CorruptionError, match="loops back"):
        list(walk_list(_space(words), head, link, head=head))
