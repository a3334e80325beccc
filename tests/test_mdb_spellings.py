"""mdb's spellings on a Linux kernel dump: ::walk proc and ::walk modules, ::findstack PID,
and ::help for every crash word, checked against values read raw from the 6.1 fixture."""

from __future__ import annotations

import pytest

from tests.linux_session import KASLR, run, target_for

DUMP = "dump.202611221942"
CRASHAPP = 0xFFFF8BE102A71840       # pid 102, the panicking task (crash's ps and bt say so)


def _member(t: object, addr: int, name: str) -> int:
    """A task_struct member as the dump holds it (its offset from the types, no pmdb model)."""
    typ = t.types.lookup("struct task_struct")                      # type: ignore[attr-defined]
    member = typ.find_member(name)
    return int.from_bytes(t.memory.read(addr + member[1] // 8, 4), "little", signed=True)  # type: ignore[attr-defined]


def test_walk_proc_is_every_thread_group_leader() -> None:
    """A process is a task whose pid is its tgid (the idle tasks: pid = tgid = 0)."""
    t = target_for(KASLR, DUMP)
    tasks, err = run(t, "::walk task")
    procs, err2 = run(t, "::walk proc")
    assert not err and not err2
    every = [int(w, 16) for w in tasks.split()]
    leaders = [a for a in every if _member(t, a, "pid") == _member(t, a, "tgid")]
    assert [int(w, 16) for w in procs.split()] == leaders and CRASHAPP in leaders


def test_walk_modules_is_the_module_walk() -> None:
    t = target_for(KASLR, DUMP)
    plural, err = run(t, "::walk modules")
    single, _ = run(t, "::walk module")
    assert not err and plural == single and plural.split()
    names, _ = run(t, "::walk modules | ::print struct module name")
    assert "crashdrv" in names


def test_findstack_pid_shows_only_that_process() -> None:
    t = target_for(KASLR, DUMP)
    out, err = run(t, "::findstack 0t102")
    addressed, _ = run(t, f"{CRASHAPP:x}::findstack")
    assert not err and out == addressed
    assert [line for line in out.splitlines() if line.startswith("stack pointer")] == \
        [f"stack pointer for thread {CRASHAPP:x}: ffffd303c0403ca8"]


@pytest.mark.parametrize("line", ["::findstack 0t99999", "::findstack zz+",
                                  "0x1234::walk proc", "::help alias",
                                  "::context 0t99999", "::context 1 2"])
def test_bad_input_is_one_line(line: str) -> None:
    _, err = run(target_for(KASLR, DUMP), line)
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, err


def test_mdb_help_knows_every_crash_word() -> None:
    """``::help WORD`` for each crash word pmdb has describes the dcmd it runs (sys: status)."""
    from pmdb.language.crash_aliases import CRASH_ALIASES

    t = target_for(KASLR, DUMP)
    for word, dcmd in CRASH_ALIASES.items():
        out, err = run(t, f"::help {word}")
        expected = word if word in ("whatis", "set") else dcmd.split()[0]   # mdb's own dcmds keep theirs
        assert not err and out.splitlines()[1].split()[0] == expected, word


def _vtop_physical(t: object, pid: int, addr: int) -> int:
    out, err = run(t, f"::vtop -c 0t{pid} {addr:#x}")
    assert not err
    return int(out.splitlines()[1].split()[1], 16)


def test_user_reads_go_through_the_current_task() -> None:
    """After ::context / ::set -t, a user address is read through that task's page tables:
    the fixture's user pages are excluded from the dump (level 31), so the read fails
    naming the physical page ::vtop -c finds for that task; a kernel thread has no user
    space and its read stops at the kernel's PGD."""
    t = target_for(KASLR, DUMP)
    try:
        _reads_in_context(t)
    finally:
        run(t, "::context 0t102")      # the shared target's current task is the panic task again


def _reads_in_context(t: object) -> None:
    for line, pid in (("::context 0t102", 102), ("::set -t 0t1", 1), ("set 102", 102)):
        run(t, line)
        _, err = run(t, "0x4393eb/X")
        assert f"physical {_vtop_physical(t, pid, 0x4393EB):#x}:" in err, (line, err)
    assert _vtop_physical(t, 1, 0x4393EB) != _vtop_physical(t, 102, 0x4393EB)
    run(t, "::context 0t2")                                    # kthreadd: no mm
    _, err = run(t, "0x4393eb/X")
    assert "no PGD entry for 0x4393eb" in err
    out, err = run(t, "ffffffff8ba1aa40/K")                    # kernel addresses stay the kernel's
    assert not err and out.split()[-1] != ""
