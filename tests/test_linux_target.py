"""Opening kernel dumps as targets: threads, registers, typed prints, raw reads, modules, bad input.

Oracles: crash 8.0.6 (crash-oracle.txt: ps, foreach bt, struct, rd, mod) and drgn's
NT_PRSTATUS listing (drgn-oracle.txt), both run with the debug vmlinux pmdb does without.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pmdb.os.linux.kernel import LinuxKernel
from pmdb.target import Target
from tests.fuzz.overlay import patched_kernel, words
from tests.linux_session import DUMP_IDS, DUMPS, crash_ps, parse_ps, run, target_for
from tests.linux_vmcore import crash_section, crash_sections


@pytest.mark.parametrize(("folder", "name"), DUMPS, ids=DUMP_IDS)
def test_threads_are_crash_tasks(folder: Path, name: str) -> None:
    """Thread.id = pid, address = task_struct, name = comm; the panic task is current."""
    target = target_for(folder, name)
    assert target.kind == "vmcore"
    assert getattr(target, "warnings", []) == []
    expected = crash_ps(folder)
    got = [(t.id, t.address, t.name) for t in target.threads()]
    assert got == [(r.pid, r.task, r.comm.strip("[]")) for r in expected]
    bt_head = crash_section(folder, "bt")[0]
    panic_task = int(re.search(r"TASK: ([0-9a-f]+)", bt_head).group(1), 16)  # type: ignore[union-attr]
    assert target.current_thread is not None and target.current_thread.address == panic_task


def _drgn_cpu_registers(folder: Path) -> dict[int, tuple[int, int]]:
    text = (folder / "drgn-oracle.txt").read_text()
    return {int(cpu): (int(rip, 16), int(rsp, 16))
            for cpu, rip, rsp in re.findall(r"cpu(\d+): RIP (0x[0-9a-f]+) .*RSP (0x[0-9a-f]+)", text)}


@pytest.mark.parametrize(("folder", "name"), [DUMPS[0], DUMPS[3], DUMPS[4], DUMPS[5]],
                         ids=[DUMP_IDS[0], DUMP_IDS[3], DUMP_IDS[4], DUMP_IDS[5]])
def test_on_cpu_tasks_have_their_cpu_registers(folder: Path, name: str) -> None:
    """The task each CPU ran ('>' in crash's ps) has that CPU's NT_PRSTATUS registers."""
    target = target_for(folder, name)
    regs = _drgn_cpu_registers(folder)
    assert len(regs) == 2
    active = [r for r in crash_ps(folder) if r.active]
    assert sorted(r.cpu for r in active) == [0, 1]
    for row in active:
        thread = next(t for t in target.threads() if t.address == row.task)
        assert (thread.registers["rip"], thread.registers["rsp"]) == regs[row.cpu]


def test_sleeping_tasks_have_their_switch_frame() -> None:
    """A sleeping task's pc and stack pointer are where crash's bt starts it: the return
    address into __schedule, stored one word below the resumed stack pointer."""
    folder, name = DUMPS[0]
    target = target_for(folder, name)
    text = "\n".join(crash_section(folder, "foreach bt"))
    firsts = re.findall(r"TASK: ([0-9a-f]+) .*\n #0 \[([0-9a-f]+)\] __schedule at ([0-9a-f]+)", text)
    assert len(firsts) > 40
    by_task = {t.address: t for t in target.threads()}
    for task, sp, pc in firsts:
        regs = by_task[int(task, 16)].registers
        assert (regs["rip"], regs["rsp"] - 8) == (int(pc, 16), int(sp, 16)), task


@pytest.mark.parametrize(("folder", "name"), DUMPS, ids=DUMP_IDS)
def test_print_task_struct_matches_crash_struct(folder: Path, name: str) -> None:
    """``ADDR::print task_struct pid comm`` and crash's spelling give crash's values."""
    section = crash_sections(folder, "struct task_struct.pid,comm")[0]
    task = crash_command(folder, "struct task_struct.pid,comm").split()[-1]
    pid = int(re.search(r"pid = (\d+)", section[0]).group(1))  # type: ignore[union-attr]
    comm = re.search(r'comm = "(.*?)(\\000)*",', section[1]).group(1)  # type: ignore[union-attr]
    target = target_for(folder, name)
    out, err = run(target, f"{task}::print task_struct pid comm")
    assert err == ""
    assert out.splitlines() == [f"pid = {pid:#x}", f'comm = [ "{comm}" ]']
    out, err = run(target, f"struct task_struct.pid,comm {task}")       # crash's own layout
    assert err == ""
    assert out.splitlines() == section


def crash_command(folder: Path, prefix: str) -> str:
    """The first crash command line starting with ``prefix``, without the prompt."""
    lines = (folder / "crash-oracle.txt").read_text().splitlines()
    return next(line for line in lines if line.startswith(f"crash> {prefix}"))[len("crash> "):]


def _words(text: str) -> list[int]:
    """The values of a format dump, addresses (before each ':') left out."""
    values = []
    for line in text.splitlines():
        tail = line.split(":", 1)[1] if ":" in line else line
        values += [int(w, 16) for w in tail.split() if re.fullmatch(r"[0-9a-f]+", w)]
    return values


@pytest.mark.parametrize(("folder", "name"), DUMPS, ids=DUMP_IDS)
def test_raw_reads_match_crash_rd(folder: Path, name: str) -> None:
    """``addr,N/K`` reads the quadwords crash's ``rd -64 addr N`` shows, on the stack and in
    a module's data (named by its module symbol)."""
    target = target_for(folder, name)
    for prefix in ("rd -64 ffff", "rd -64 crashdrv_head"):
        command = crash_command(folder, prefix).split()
        section = crash_sections(folder, prefix)[0]
        where, count = command[-2], int(command[-1])
        crash_values = [int(w, 16) for line in section for w in line.split(":", 1)[1].split()[:2]
                        if re.fullmatch(r"[0-9a-f]{16}", w)]
        assert len(crash_values) == count
        addr = where if where.startswith("crashdrv") else f"0x{where}"
        out, err = run(target, f"{addr},0t{count}/K")
        assert err == ""
        assert _words(out) == crash_values


@pytest.mark.parametrize(("folder", "name"), [DUMPS[0], DUMPS[4], DUMPS[5]],
                         ids=[DUMP_IDS[0], DUMP_IDS[4], DUMP_IDS[5]])
def test_module_walker_is_crash_mod(folder: Path, name: str) -> None:
    mods = [line.split()[0] for line in crash_section(folder, "mod")[1:]]
    out, err = run(target_for(folder, name), "::walk module")
    assert err == ""
    assert sorted(out.split()) == sorted(mods)


def test_set_thread_picks_registers() -> None:
    folder, name = DUMPS[0]
    target = target_for(folder, name)
    try:
        out, err = run(target, "::set -t 0t97", "$r")
        assert err == ""
        assert out.splitlines()[0] == "current thread: 97 (ffff8be102a73080) sh"
        assert "%rip = 0xffffffff8aa5271d __schedule+0x34d" in out
        out, err = run(target, "::set -t 0t99999")
        assert out == "" and err.count("\n") == 1 and "no task" in err
    finally:
        run(target, "::set -t ffff8be102a71840")


# -- bad input -------------------------------------------------------------------------------

def _patched_target(base: Target, values: dict[int, int]) -> Target:
    """The kernel with some 8-byte words rewritten: damage without touching the dump."""
    return patched_kernel(base, words(values))


def test_cyclic_task_list_costs_one_line() -> None:
    """A tasks.next pointing back into the list: ::ps says so in one line and still lists
    every task (the rest is found backwards through prev); no hang."""
    folder, name = DUMPS[0]
    base = target_for(folder, name)
    rows = crash_ps(folder)
    tasks_off = base.os.reader.layout.tasks  # type: ignore[attr-defined]
    victim = next(r for r in rows if r.pid == 50).task
    back_to = next(r for r in rows if r.pid == 10).task
    target = _patched_target(base, {victim + tasks_off: back_to + tasks_off})
    out, err = run(target, "::ps")
    problems = [line for line in out.splitlines() if line.startswith("pmdb: ")]
    assert len(problems) == 1 and "loops" in problems[0]
    assert parse_ps(out.splitlines()) == rows
    walked, _ = run(target, "::walk task")
    assert sum(1 for line in walked.splitlines() if line.startswith("pmdb: ")) == 1


def test_wild_task_pointer_costs_one_line() -> None:
    """A tasks.next into unmapped memory: one line, the tasks before and after still listed."""
    folder, name = DUMPS[0]
    base = target_for(folder, name)
    rows = crash_ps(folder)
    tasks_off = base.os.reader.layout.tasks  # type: ignore[attr-defined]
    victim = next(r for r in rows if r.pid == 50).task
    target = _patched_target(base, {victim + tasks_off: 0xFFFFD30000000000})
    out, _ = run(target, "::ps")
    assert sum(1 for line in out.splitlines() if line.startswith("pmdb: ")) == 1
    assert parse_ps(out.splitlines()) == rows


def test_unknown_type_costs_one_line() -> None:
    folder, name = DUMPS[0]
    target = target_for(folder, name)
    out, err = run(target, "ffff8be102a71840::print struct no_such_struct", "struct no_such_struct 0",
                   "ffff8be102a71840::print task_struct pid")
    assert err.splitlines() == ["pmdb: unknown type 'struct no_such_struct'"] * 2
    assert out == "pid = 0x66\n"


def test_kernel_dcmds_refuse_user_cores(user_cores: Path) -> None:
    from pmdb.config import Config
    from pmdb.opener import open_target

    core = next(user_cores.glob("*x86_64*.core"), None) or next(user_cores.glob("*.core"), None)
    if core is None:
        pytest.skip("no user core fixture")
    target = open_target(str(core), config=Config())
    out, err = run(target, "::ps", "::cpuinfo")
    assert out == ""
    assert err.count("needs a Linux kernel dump") == 2


def test_qemu_cpu_notes_agree_with_prstatus() -> None:
    """QEMU writes each CPU twice (NT_PRSTATUS and its own QEMUCPUState): the fallback
    reader of the second gives the registers the first does."""
    from pmdb.os.linux.arch import prstatus_registers as _note_registers
    from pmdb.os.linux.arch.x86_64.notes import qemu_registers

    folder, name = DUMPS[0]
    target = target_for(folder, name)
    notes = target.os.dump.notes  # type: ignore[attr-defined]
    from_qemu = qemu_registers(notes, target.arch)
    from_prstatus = _note_registers(notes, target.arch)
    assert len(from_qemu) == len(from_prstatus) == 2
    for (_, q), (_, p) in zip(from_qemu, from_prstatus, strict=True):
        assert q == {k: p[k] for k in q}
    assert [q["rip"] for _, q in from_qemu] == [v[0] for _, v in sorted(_drgn_cpu_registers(folder).items())]


@pytest.mark.parametrize(("line", "expected"), [
    ("ps", "::ps -C"),                   # -C: crash's meaning of ps -t (run times)
    ("ps -k", "::ps -C -k"),
    ("  ps sleep | ::print pid", "  ::ps -C sleep | ::print pid"),
    ("sys", "::status"),
    ("bt", "::bt"),
    ("struct task_struct.pid,comm ffff8be102a71840", "::struct task_struct.pid,comm ffff8be102a71840"),
    ("whatis list_head", "::ptype list_head"),
    ("list -H modules", "::list -H modules"),
    ("psx", "psx"),
    ("::ps", "::ps"),
    ("ps::print", "ps::print"),          # an expression: the word is followed by an operator
    ("files/K", "files/K"),
])
def test_crash_spellings(line: str, expected: str) -> None:
    from pmdb.language.crash_aliases import rewrite

    known = {"ps", "status", "print", "bt", "list", "struct", "ptype"}
    assert rewrite(line, has_dcmd=known.__contains__) == expected


@pytest.mark.parametrize("line", ["files", "mount 1", "log", "net -s | ::grep ."])
def test_crash_commands_pmdb_lacks_are_errors(line: str) -> None:
    """A crash command word is never read as an expression (files and mount are kernel
    symbols: read so, they printed nothing and succeeded)."""
    from pmdb.errors import CommandError
    from pmdb.language.crash_aliases import rewrite

    with pytest.raises(CommandError, match="not in pmdb yet"):
        rewrite(line, has_dcmd={"ps"}.__contains__)


def test_ps_json_records() -> None:
    import io
    import json

    from pmdb.session import Session

    folder, name = DUMPS[0]
    out = io.StringIO()
    Session(target_for(folder, name), stdout=out, json_mode=True).run_line("::ps")
    records = json.loads(out.getvalue())["records"]     # one JSON line per command
    rows = crash_ps(folder)
    assert [(r["pid"], int(r["task"], 16), r["state"], r["rss_kb"]) for r in records] == \
        [(r.pid, r.task, r.state, r.rss) for r in rows]


def test_kernel_without_types_still_answers_what_it_can() -> None:
    """No BTF (a kernel built without it): tasks are unknown in one line per command, and
    ::status still shows the fields that need no types, with crash's values."""
    from pmdb.types.registry import TypeRegistry

    folder, name = DUMPS[0]
    base = target_for(folder, name)
    kernel = base.os
    assert isinstance(kernel, LinuxKernel)
    bare = LinuxKernel(kernel.dump, kernel.km, TypeRegistry(8), path=kernel.path)
    target = Target(path=base.path, arch=base.arch, memory=base.memory, symbols=base.symbols,
                    types=bare.types, os=bare, kind="vmcore")
    out, err = run(target, "::ps", "::status")
    assert err == "pmdb: no struct task_struct in the kernel's BTF: tasks are unknown\n"
    from tests.linux_session import parse_fields

    got, crash = parse_fields(out.splitlines()), parse_fields(crash_section(folder, "sys"))
    for key in ("CPUS", "UPTIME", "LOAD AVERAGE", "RELEASE", "PANIC"):
        assert got[key] == crash[key], key
