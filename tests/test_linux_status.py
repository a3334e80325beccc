"""::status (and crash's spelling ``sys``) on every kernel fixture dump, against crash's ``sys``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from pmdb.os.linux.mm.kernel_memory import kernel_parts
from tests.linux_session import DUMP_IDS, DUMPS, parse_fields, run, target_for
from tests.linux_vmcore import README, crash_section


@pytest.mark.parametrize(("folder", "name"), DUMPS, ids=DUMP_IDS)
def test_status_fields_match_crash_sys(folder: Path, name: str) -> None:
    """Every field crash's sys prints, with the same value; KERNEL says what pmdb used
    (the debug vmlinux found in /usr/lib/debug, as crash names the one it read, or none)
    and keeps crash's [TAINTED] mark; DUMPFILE names the file opened."""
    expected = parse_fields(crash_section(folder, "sys"))
    target = target_for(folder, name)
    km = kernel_parts(target)
    assert km is not None
    used = km.vmlinux or "(none; kallsyms and BTF from the dump)"
    out, err = run(target, "::status")
    assert err == ""
    got = parse_fields(out.splitlines())
    for key, value in expected.items():
        if key == "KERNEL":
            assert got[key].startswith(used)
            assert os.path.basename(used) == value.split()[0] or not km.vmlinux
            assert got[key].endswith("[TAINTED]") == value.endswith("[TAINTED]")
        elif key == "DUMPFILE":
            assert got[key] == os.path.basename(name)
        else:
            assert got[key] == value, key
    assert len(expected) == 13


@pytest.mark.parametrize(("folder", "name"), [DUMPS[0], DUMPS[4], DUMPS[5]],
                         ids=[DUMP_IDS[0], DUMP_IDS[4], DUMP_IDS[5]])
def test_sys_spelling_lays_out_like_crash(folder: Path, name: str) -> None:
    """``sys`` runs ::status; its lines are crash's, right-aligned keys included."""
    target = target_for(folder, name)
    out, err = run(target, "sys")
    assert err == ""
    assert out == run(target, "::status")[0]
    lines = out.splitlines()
    crash = crash_section(folder, "sys")
    for mine, theirs in zip(lines[2:13], crash[2:13], strict=True):
        assert mine == theirs


@pytest.mark.parametrize(("folder", "name"), [DUMPS[0], DUMPS[4], DUMPS[5]],
                         ids=[DUMP_IDS[0], DUMP_IDS[4], DUMP_IDS[5]])
def test_panic_task_is_crash_bt_task(folder: Path, name: str) -> None:
    """The panic task rows name the task crash's bt starts from."""
    head = crash_section(folder, "bt")[0]
    m = re.match(r'PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "(.*)"', head)
    assert m is not None
    got = parse_fields(run(target_for(folder, name), "::status")[0].splitlines())
    assert (got["PID"], got["TASK"], got["CPU"], got["COMMAND"]) == (m[1], m[2], m[3], f'"{m[4]}"')
    assert got["STATE"] == "TASK_RUNNING (PANIC)"
    if folder in README:
        assert int(got["TASK"], 16) == README[folder]["panic_task"]


def test_status_json_has_every_field() -> None:
    import io
    import json

    from pmdb.session import Session

    folder, name = DUMPS[0]
    out = io.StringIO()
    Session(target_for(folder, name), stdout=out, json_mode=True).run_line("::status")
    record = json.loads(out.getvalue())["records"][0]     # one JSON line per command
    assert record["LOAD_AVERAGE"] == parse_fields(crash_section(folder, "sys"))["LOAD AVERAGE"]


def test_panic_message_precedence() -> None:
    """crash's order: a fault line, then SysRq, then 'Kernel panic', then Oops/BUG lines."""
    from pmdb.os.linux.printk.panicmsg import panic_message

    oops = ["BUG: kernel NULL pointer dereference", "Oops: 0000 [#1] PREEMPT SMP NOPTI"]
    panic = "Kernel panic - not syncing: Fatal exception"
    assert panic_message(oops + [panic]) == panic
    assert panic_message(oops) == "Oops: 0000 [#1] PREEMPT SMP NOPTI"
    assert panic_message(["general protection fault: 0000 [#1] SMP", panic]) == \
        "general protection fault: 0000 [#1] SMP"
    assert panic_message(["all quiet"]) is None


def test_status_on_damaged_clock_variables() -> None:
    """tick_nsec above 2e9 (HZ would be 0) and a wall time gmtime cannot convert: each costs
    its own field, not the whole ::status (both were ZeroDivisionError/OverflowError)."""
    from tests.fuzz.overlay import patched_kernel, words

    folder, name = DUMPS[0]
    base = target_for(folder, name)
    tick, tk = base.symbols.lookup("tick_nsec"), base.symbols.lookup("tk_core")
    assert tick is not None and tk is not None
    xtime = base.types.find("timekeeper").find_member("xtime_sec")[1] // 8 + 8
    damaged = patched_kernel(base, words({tick.addr: 3_000_000_000, tk.addr + xtime: 1 << 62}))
    out, err = run(damaged, "::status")
    fields = parse_fields(out.splitlines())
    assert err == ""
    assert fields["UPTIME"].startswith("(unknown: corrupt data at") and "tick_nsec 3000000000" in fields["UPTIME"]
    assert fields["DATE"] == f"(not a date: {1 << 62:#x} seconds)"
    assert fields["RELEASE"] == parse_fields(crash_section(folder, "sys"))["RELEASE"]


COUNTED = [("6.1.0-57-amd64", "null", "vmcore.mdf"), ("6.1.0-57-amd64", "null", "vmcore.elf"),
           ("5.10.0-32-amd64", "null", "vmcore.mdf"), ("6.12.117+deb13-amd64", "null", "vmcore.elf"),
           ("7.2.13+deb14-amd64", "null", "vmcore.elf"), ("7.2.13+deb14-amd64", "null", "vmcore.mdf")]


@pytest.mark.parametrize(("release", "scenario", "name"), COUNTED, ids=["-".join(c) for c in COUNTED])
def test_tasks_counted_by_thread_groups_is_the_walks_count(release: str, scenario: str, name: str) -> None:
    """TASKS comes from each thread group's nr_threads (a read or two a process) where the
    list of groups reads cleanly: then it is the number of tasks the walk finds, unless the
    walk itself lost threads to missing pages (then it says so, and the kernel's count is
    the larger); otherwise TASKS is the walk's count. The same before and after ::ps."""
    from pmdb.config import Config
    from pmdb.opener import open_target
    from pmdb.os.linux.tasks.tasks import count_tasks
    from tests import kernel_truth as kt

    folder = kt.need_lab_dump(release, scenario, name)
    target = open_target(str(folder / name), config=Config({"debuginfo.directories": []}))
    kernel: Any = target.os
    before = parse_fields(run(target, "::status")[0].splitlines())["TASKS"]
    init_task = kernel.lookup("init_task")
    counted = count_tasks(kernel.reader.mem, init_task, kernel._idle_tasks(init_task),
                          kernel.reader.layout)
    walked = len(kernel.tasks())
    if name == "vmcore.elf":
        assert counted is not None, "a whole dump's thread groups all read"
    if counted is None:
        assert int(before) == walked
    elif kernel.problems:
        assert int(before) == counted >= walked
    else:
        assert int(before) == counted == walked
    assert parse_fields(run(target, "::status")[0].splitlines())["TASKS"] == before


def test_tasks_count_falls_back_to_the_walk_on_a_damaged_group() -> None:
    """A thread group whose nr_threads is nonsense (or unreadable) is damage: TASKS is then
    the walk's count, not a sum that includes it."""
    from tests.fuzz.overlay import patched_kernel, words

    folder, name = DUMPS[0]
    base = target_for(folder, name)
    kernel: Any = base.os
    layout = kernel.reader.layout
    leader = next(t for t in kernel.tasks() if t.pid == 1)
    signal = base.memory.ptr(leader.address + layout.signal)
    for value in (0, 1 << 31):
        damaged = patched_kernel(base, words({signal + layout.nr_threads: value}, size=4))
        out, err = run(damaged, "::status")
        assert err == "" and parse_fields(out.splitlines())["TASKS"] == str(len(kernel.tasks()))
    damaged = patched_kernel(base, words({leader.address + layout.signal: 0xDEAD000000000000}))
    assert parse_fields(run(damaged, "::status")[0].splitlines())["TASKS"] == str(len(damaged.os.tasks()))
