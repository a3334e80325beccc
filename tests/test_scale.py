"""pmdb on a big, busy machine: the kernel lab's ``busy`` dump (issue 20) against its truth.

The guest (tests/vmlab, scenario busy) had 4 GB, 10,264 tasks in a few hundred processes
and 2.1 million slab objects when it recorded its own /proc and crashed. Every answer is
compared with that record over all the tasks and caches, never with a number written here:
::ps against each /proc/PID/stat, every task's stack (``foreach bt`` one by one, ``::stacks``
by its groups) against /proc/PID/stack, ::kmastat against /proc/slabinfo. Skipped when the
lab has not made the dump (``python -m tests.vmlab make 6.1 busy --formats elf,mdf``); CI
makes it, and PMDB_REQUIRE_FIXTURES=1 turns the skip into a failure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.target import Target
from tests import kernel_truth as kt
from tests.linux_session import run
from tests.vmlab.truth import Task, load_truth

RELEASE = "6.1.0-57-amd64"
_OPEN: dict[Path, Target] = {}
_PID_LINE = re.compile(r"^PID: (\d+)\s+TASK: ([0-9a-f]+)")
_BT_FRAME = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at [0-9a-f]+")
_GROUP_HEAD = re.compile(r"^([0-9a-f]{16}) (\S+)\s+(\d+)  (\d+) ")
_GROUP_MEMBER = re.compile(r"^([0-9a-f]{16}) {17}(\d+) ")
_CALL = re.compile(r"^ {17}(\S+)")


def _busy(name: str = "vmcore.mdf") -> tuple[Path, Target]:
    folder = kt.need_lab_dump(RELEASE, "busy", name)
    path = folder / name
    if path not in _OPEN:
        _OPEN[path] = open_target(str(path), config=Config())
    return folder, _OPEN[path]


@pytest.fixture(params=["vmcore.mdf", "vmcore.elf"], ids=["kdump-c-d31", "elf"])
def busy(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    """(the busy set's folder, one of its dumps opened once per run)."""
    return _busy(request.param)


def _tasks(folder: Path) -> dict[int, Task]:
    return {t.tid: t for t in load_truth(folder / "truth").all_tasks()}


def test_the_dump_is_big_and_busy() -> None:
    """What the scenario promises, from the guest's own record (so the tests below are
    at scale): 10,000 tasks or more, a million slab objects or more, 4 GB."""
    folder, _ = _busy()
    truth = load_truth(folder / "truth")
    assert len(truth.all_tasks()) >= 10_000
    assert sum(c.active_objs for c in truth.slabs.values()) >= 1_000_000
    assert truth.meminfo["MemTotal"] >= 3_900_000


def test_ps_lists_every_task_of_the_guest(busy: tuple[Path, Target]) -> None:
    """Every task /proc listed is a row of ::ps (the busy guest's tasks sleep for ever: none
    exits before the crash), with its pid, ppid, state and comm."""
    folder, target = busy
    agreement = kt.compare_ps(target, folder / "truth")
    rows = {r.pid for r in kt.parse_ps(run(target, "::ps")[0].splitlines())}
    missing = sorted(set(_tasks(folder)) - rows)
    assert not missing, f"{len(missing)} tasks of /proc not in ::ps, e.g. {missing[:5]}"
    assert agreement.matched >= 10_000
    assert not agreement.differences, "\n".join(agreement.differences[:20])


def _function(target: Target, name: str) -> int | str:
    sym = target.symbols.lookup(name)
    return sym.addr if sym is not None else name


def _same_stack(target: Target, proc: list[str], have: list[str]) -> bool:
    return kt.is_subsequence([_function(target, n) for n in proc], [_function(target, n) for n in have])


def _sleeping(target: Target, folder: Path) -> dict[int, Task]:
    """The tasks with a /proc stack that were on no CPU at the crash (a running task's
    stack moved on after the record)."""
    active = {r.pid for r in kt.parse_ps(run(target, "::ps")[0].splitlines()) if r.active}
    return {pid: t for pid, t in _tasks(folder).items() if t.stack and pid not in active}


def test_foreach_bt_gives_every_tasks_stack() -> None:
    """Each task's /proc/PID/stack is a subsequence of its stack in ``foreach bt``."""
    folder, target = _busy()
    stacks: dict[int, list[str]] = {}
    frames: list[str] = []
    for line in run(target, "foreach bt")[0].splitlines():
        if (m := _PID_LINE.match(line)) is not None:
            frames = stacks.setdefault(int(m.group(1)), [])
        elif (f := _BT_FRAME.match(line)) is not None:
            frames.append(f.group(1))
    want = _sleeping(target, folder)
    assert len(want) >= 10_000
    wrong = [f"pid {pid} ({t.comm}): /proc {t.stack}, foreach bt {stacks.get(pid)}"
             for pid, t in sorted(want.items()) if not _same_stack(target, t.stack, stacks.get(pid, []))]
    assert not wrong, f"{len(wrong)} stacks differ:\n" + "\n".join(wrong[:10])


def test_stacks_groups_every_task_by_its_stack() -> None:
    """``::stacks -v`` puts each task in one group whose calls hold the task's /proc stack,
    and its groups count every task ::ps lists."""
    folder, target = _busy()
    members: dict[int, list[str]] = {}
    calls: list[str] = []
    counted = 0
    for line in run(target, "::stacks -v")[0].splitlines():
        if (m := _GROUP_HEAD.match(line)) is not None:
            calls = []
            counted += int(m.group(3))
            members[int(m.group(4))] = calls
        elif (m := _GROUP_MEMBER.match(line)) is not None:
            assert int(m.group(2)) not in members, f"pid {m.group(2)} is in two groups"
            members[int(m.group(2))] = calls
        elif (c := _CALL.match(line)) is not None:
            calls.append(c.group(1).split("+")[0])
    assert counted == len(kt.parse_ps(run(target, "::ps")[0].splitlines()))
    want = _sleeping(target, folder)
    wrong = [f"pid {pid} ({t.comm}): /proc {t.stack}, its group {members.get(pid)}"
             for pid, t in sorted(want.items()) if not _same_stack(target, t.stack, members.get(pid, []))]
    assert not wrong, f"{len(wrong)} tasks in the wrong group:\n" + "\n".join(wrong[:10])
    kinds = {tuple(c) for pid, c in members.items() if pid in want and want[pid].comm.startswith("busythr")}
    assert len(kinds) >= 4, "the busy threads sleep four ways: as many groups at least"


def test_kmastat_is_slabinfo(busy: tuple[Path, Target]) -> None:
    """::kmastat has /proc/slabinfo's caches and slot sizes, and each cache the busy
    guest filled (10,000 objects or more) holds slabinfo's objects and slabs exactly; but
    what the recorder itself opened and closed just before reading slabinfo (its ``head``
    reads every /proc/PID file, then slabinfo last) may still be being freed through RCU:
    filp, dentry and proc_inode_cache may differ by a few slabs. (Dumps made when the
    recorder read slabinfo first hold the inodes and dentries it made after: remake them.)"""
    folder, target = busy
    agreement = kt.compare_kmastat(target, folder / "truth")
    assert agreement.matched and not agreement.differences, "\n".join(agreement.differences)
    rows = {f[1]: (int(f[4]), int(f[5])) for line in run(target, "::kmastat")[0].splitlines()[1:]
            if len(f := line.split()) >= 6}
    slabinfo = (folder / "truth" / "slabinfo").read_text().splitlines()[2:]
    # name active_objs num_objs objsize objperslab pagesperslab : tunables ... : slabdata active num
    big = {f[0]: (int(f[2]), int(f[14])) for line in slabinfo if len(f := line.split()) >= 15
           and int(f[2]) >= 10_000}
    assert sum(n for n, _ in big.values()) >= 1_000_000
    wrong = [f"{name}: ::kmastat (objects, slabs) {rows.get(name)}, /proc/slabinfo {want}"
             for name, want in sorted(big.items()) if rows.get(name) != want and not _recorders(name, rows.get(name), want)]
    assert not wrong, "\n".join(wrong)


def _recorders(name: str, have: tuple[int, int] | None, want: tuple[int, int]) -> bool:
    """A difference the truth's recorder makes: the files, dentries and proc inodes of what
    it read, freed through RCU after it read slabinfo, within 4 slabs."""
    return name in ("filp", "dentry", "proc_inode_cache") and have is not None and abs(have[1] - want[1]) <= 4


def test_status_counts_ten_thousand_tasks_by_their_groups(busy: tuple[Path, Target]) -> None:
    """::status's TASKS on the busy dump comes from the thread groups' own counts (no task
    read) and is the number of tasks ::ps lists."""
    from pmdb.os.linux.tasks.tasks import count_tasks

    _, target = busy
    kernel: Any = target.os
    init_task = kernel.lookup("init_task")
    counted = count_tasks(kernel.reader.mem, init_task, kernel._idle_tasks(init_task), kernel.reader.layout)
    assert counted is not None and counted > 10_000
    out, _ = run(target, "::status")
    assert f"TASKS: {counted}" in out
    assert counted == len(kernel.tasks())
