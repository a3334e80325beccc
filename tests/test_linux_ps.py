"""::ps and friends on every kernel fixture dump, against crash 8.0.6's outputs (crash-oracle.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.linux_session import DUMP_IDS, DUMPS, crash_ps, parse_ps, run, target_for
from tests.linux_vmcore import crash_section


@pytest.mark.parametrize(("folder", "name"), DUMPS, ids=DUMP_IDS)
def test_ps_matches_crash_for_every_task(folder: Path, name: str) -> None:
    """Same tasks in the same order, each with crash's pid, ppid, cpu, task, state, %MEM,
    VSZ, RSS, command (brackets for kernel threads) and '>' mark."""
    out, err = run(target_for(folder, name), "::ps")
    assert err == ""
    expected = crash_ps(folder)
    assert len(expected) >= 60
    assert parse_ps(out.splitlines()) == expected


@pytest.mark.parametrize(("folder", "name"), DUMPS[:1] + DUMPS[4:], ids=DUMP_IDS[:1] + DUMP_IDS[4:])
def test_ps_text_is_crash_text(folder: Path, name: str) -> None:
    """Column for column: crash's ps lines, header included, spelled the crash way."""
    out, _ = run(target_for(folder, name), "ps")
    assert out.splitlines() == crash_section(folder, "ps")


def test_ps_filters_partition_crash_rows() -> None:
    folder, name = DUMPS[0]
    target = target_for(folder, name)
    expected = crash_ps(folder)
    kernel = [r for r in expected if r.comm.startswith("[")]
    user = [r for r in expected if not r.comm.startswith("[")]
    assert parse_ps(run(target, "::ps -k")[0].splitlines()) == kernel
    assert parse_ps(run(target, "::ps -u")[0].splitlines()) == user
    sleeps = [r for r in expected if r.comm == "sleep"]
    assert parse_ps(run(target, "ps sleep")[0].splitlines()) == sleeps
    one = [r for r in expected if r.pid == 97]
    assert parse_ps(run(target, "::ps 0t97")[0].splitlines()) == one
    assert parse_ps(run(target, f"{one[0].task:x}::ps")[0].splitlines()) == one


def test_ps_piped_hands_on_typed_tasks() -> None:
    folder, name = DUMPS[0]
    out, err = run(target_for(folder, name), "::ps -u | ::print pid comm")
    assert err == ""
    pids = [int(v, 16) for v in re.findall(r"^pid = (0x[0-9a-f]+|0)$", out, re.M)]
    comms = re.findall(r'^comm = \[ "(.*)" \]$', out, re.M)
    user = [r for r in crash_ps(folder) if not r.comm.startswith("[")]
    assert pids == [r.pid for r in user]
    assert comms == [r.comm for r in user]


@pytest.mark.parametrize(("folder", "name"), [DUMPS[0], DUMPS[4]], ids=[DUMP_IDS[0], DUMP_IDS[4]])
def test_walk_task_print_pid_comm(folder: Path, name: str) -> None:
    """The task walker carries struct task_struct: ::print needs no type name."""
    target = target_for(folder, name)
    typed, err1 = run(target, "::walk task | ::print pid comm")
    named, err2 = run(target, "::walk task | ::print task_struct pid comm")
    assert err1 == err2 == ""
    assert typed == named
    pids = [int(v, 16) for v in re.findall(r"^pid = (0x[0-9a-f]+|0)$", typed, re.M)]
    assert pids == [r.pid for r in crash_ps(folder)]
    walked, _ = run(target, "::walk task")
    assert [int(a, 16) for a in walked.split()] == [r.task for r in crash_ps(folder)]


def test_pgrep_hands_tasks_to_thread_walker_and_findstack() -> None:
    folder, name = DUMPS[0]
    target = target_for(folder, name)
    sleeps = [r for r in crash_ps(folder) if r.comm == "sleep"]
    out, err = run(target, "::pgrep sleep | ::walk thread")
    assert err == ""
    assert [int(a, 16) for a in out.split()] == [r.task for r in sleeps]
    out, _ = run(target, "::pgrep sleep | ::walk thread | ::findstack")
    heads = re.findall(r"^stack pointer for thread (\w+)", out, re.M)
    assert [int(h, 16) for h in heads] == [r.task for r in sleeps]     # mdb names a kernel thread by its address
    out, _ = run(target, "::pgrep -x sl")
    assert parse_ps(out.splitlines()) == []
    out, _ = run(target, "::pgrep ^crash")
    assert [r.pid for r in parse_ps(out.splitlines())] == [102]


def test_ptree_children_sit_under_their_parents() -> None:
    """Every indented line's nearest shallower line above is its parent in crash's ps."""
    folder, name = DUMPS[0]
    out, err = run(target_for(folder, name), "::ptree")
    assert err == ""
    parent_of = {r.pid: r.ppid for r in crash_ps(folder)}
    lines = out.splitlines()
    stack: list[tuple[int, int]] = []   # (depth, pid)
    seen = set()
    for line in lines:
        depth = (len(line) - len(line.lstrip())) // 4
        pid = int(re.search(r"\[(\d+)\]$", line).group(1))  # type: ignore[union-attr]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if depth:
            assert stack and stack[-1][1] == parent_of[pid], line
        assert depth == _depth(pid, parent_of), line
        stack.append((depth, pid))
        seen.add(pid)
    assert seen == set(parent_of)


def _depth(pid: int, parent_of: dict[int, int]) -> int:
    """How far below an idle task (pid 0) crash's ppid chain puts a task."""
    depth = 0
    while pid != 0:
        pid = parent_of[pid]
        depth += 1
    return depth


def test_cpuinfo_matches_crash_runq() -> None:
    """Each CPU's runqueue address and current task as crash's runq shows them."""
    folder, name = DUMPS[0]
    target = target_for(folder, name)
    runq = "\n".join(crash_section(folder, "runq"))
    expected = [(int(cpu), int(rq, 16), int(pid), int(task, 16)) for cpu, rq, pid, task in re.findall(
        r"CPU (\d+) RUNQUEUE: ([0-9a-f]+)\n\s+CURRENT: PID: (\d+)\s+TASK: ([0-9a-f]+)", runq)]
    assert len(expected) == 2
    out, err = run(target, "::cpuinfo")
    assert err == ""
    rows = [line.split() for line in out.splitlines()[1:]]
    got = [(int(r[0]), int(r[1], 16), int(r[5]), int(r[4], 16)) for r in rows]
    assert got == expected
    walked, _ = run(target, "::walk cpu")
    assert [int(a, 16) for a in walked.split()] == [e[1] for e in expected]
