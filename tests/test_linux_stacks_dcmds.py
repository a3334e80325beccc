"""::stacks, ::findstack, ::threadlist and $c on kernel dumps, and bad stacks through the dcmds.

Oracles: crash 8.0.6's ``ps`` and ``foreach bt`` and ``bt`` (crash-oracle.txt), drgn's
registers and raw stack scan (drgn-oracle.txt, ELF dump), the kernel's own oops
trace (console.log) and the real System.map; none of the expected text comes
from pmdb. The golden ::findstack of the panic task is built from them: every
frame crash's bt numbers, the interrupted function of its exception frame, the
CPU's registers as the top frame (drgn), and the return address crash leaves out
because it symbolizes at offset 0 (drgn's scan shows it at ``show_opcodes.cold+0x0``;
System.map says the function that ends there is ``oops_end.cold``, which is also
where drgn's DWARF unwinder puts that frame).
"""

from __future__ import annotations

import lzma
import re
from collections import Counter
from pathlib import Path

import pytest

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.os.linux.arch.x86_64.orc import OrcFinder
from pmdb.os.linux.arch.x86_64.unwind import KernelUnwinder
from pmdb.target import Target
from tests.conftest import need_fixture
from tests.fuzz.overlay import Overlay, words
from tests.linux_session import DUMP_IDS, DUMPS, crash_ps, run, target_for
from tests.linux_vmcore import KASLR, README, crash_section
from tests.test_kernel_unwind import parse_bt

KASLR_DUMPS = [d for d in DUMPS if d[0] == KASLR]
_SCAN = re.compile(r"\[0x([0-9a-f]+)\] 0x([0-9a-f]+) (\S+)\+0x([0-9a-f]+)/")


@pytest.fixture(scope="module", params=DUMPS, ids=DUMP_IDS)
def dump(request: pytest.FixtureRequest) -> tuple[Path, Target]:
    folder, name = request.param
    return folder, target_for(folder, name)


# -- ::stacks ------------------------------------------------------------------------------

def parse_stacks(text: str) -> list[tuple[str, int, list[int], list[str]]]:
    """(state, count, task addresses, frame lines) per group of ::stacks -v output."""
    groups = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        if lines[0].startswith("THREAD"):
            lines = lines[1:]
        head = lines[0].split()
        tasks = [int(line.split()[0], 16) for line in lines if re.match(r"[0-9a-f]{16}\b", line)]
        frames = [line.strip() for line in lines if line.startswith(" " * 17)]
        groups.append((head[1], int(head[2]), tasks, frames))
    return groups


def test_stacks_counts_every_task_once(dump: tuple[Path, Target]) -> None:
    """Counts add up to crash's task count; -v lists each of crash's tasks exactly once;
    piped, each task's pid goes on once (the multiset of pids is ps's)."""
    folder, target = dump
    ps = crash_ps(folder)
    out, err = run(target, "::stacks")
    assert not err
    counts = [int(m[1]) for m in re.finditer(r"^[0-9a-f]{16} \S+\s+(\d+)$", out, re.M)]
    assert sum(counts) == len(ps) and counts == sorted(counts, reverse=True)
    groups = parse_stacks(run(target, "::stacks -v")[0])
    listed = [t for g in groups for t in g[2]]
    assert len(listed) == len(set(listed)) and set(listed) == {r.task for r in ps}
    assert all(len(g[2]) == g[1] for g in groups)
    piped = run(target, "::stacks | ::print struct task_struct pid")[0]
    assert Counter(int(x, 0) for x in re.findall(r"pid = (\S+)", piped)) == Counter(r.pid for r in ps)


def test_stacks_groups_are_crashs(dump: tuple[Path, Target]) -> None:
    """Sleeping tasks group as crash's foreach bt function names and ps states say; -c and
    -m select the tasks whose crash trace has that function or module."""
    folder, target = dump
    state = {r.task: r.state for r in crash_ps(folder)}
    crash = {t.task: t for t in parse_bt(crash_section(folder, "foreach bt"))}
    active = {r.task for r in crash_ps(folder) if r.active}
    want: dict[tuple[str, tuple[str, ...]], set[int]] = {}
    for task, ct in crash.items():
        if task not in active:
            want.setdefault((state[task], tuple(f.name for f in ct.frames)), set()).add(task)
    groups = parse_stacks(run(target, "::stacks -v")[0])
    ours = {(s, tuple(f.split("+")[0].split()[0] for f in frames)): set(tasks)
            for s, _, tasks, frames in groups if not set(tasks) & active}
    assert ours == want
    for func in ("do_nanosleep", "rescuer_thread", "kthreadd"):
        expect = {t for t, ct in crash.items() if any(f.name == func for f in ct.frames)}
        got = parse_stacks(run(target, f"::stacks -a -c {func}")[0])
        assert {t for g in got for t in g[2]} == expect, func
    expect = {t for t, ct in crash.items() if any(f.module == "crashdrv" for f in ct.frames)}
    got = parse_stacks(run(target, "::stacks -a -m crashdrv")[0])
    assert {t for g in got for t in g[2]} == expect and len(expect) == 1


# -- the panic task, mdb style ---------------------------------------------------------------

def golden_findstack(folder: Path) -> list[str]:
    """The panic task's ::findstack from crash, drgn, console.log and System.map (docstring)."""
    drgn = need_fixture(folder / "drgn-oracle.txt").read_text()
    (bt,) = parse_bt(crash_section(folder, "bt"))
    cpu = re.search(rf"cpu{bt.cpu}: RIP 0x[0-9a-f]+ (\S+)\+(0x[0-9a-f]+)/\S+\s+RSP 0x([0-9a-f]+)", drgn)
    assert cpu is not None
    scan = {int(m[1], 16): (int(m[2], 16), m[3], int(m[4], 16)) for m in _SCAN.finditer(drgn)}
    oops = need_fixture(folder / "console.log").read_text()
    rsp = int(cpu[3], 16)
    lines = [f"stack pointer for thread {bt.task:x}: {rsp:x}", f"[ {rsp:016x} {cpu[1]}+{cpu[2]}() ]"]
    prev = rsp
    for f in bt.frames:
        for slot in sorted(s for s in scan if prev < s < f.addr and scan[s][2] == 0):
            name, off = function_ending_at(scan[slot][0], folder)      # crash's dropped frame
            lines.append(f"  {slot:016x} {name}+{off:#x}()")
        if f.module:
            m = re.search(rf"{f.name}\+(0x[0-9a-f]+)/0x[0-9a-f]+ \[{f.module}\]", oops)
            assert m is not None
            call = f"{f.name}+{m[1]}() [{f.module}]"
        else:
            pc, name, off = scan[f.addr]
            assert (pc, name) == (f.pc, f.name)
            call = f"{name}+{off:#x}()"
        lines.append(f"  {f.addr:016x} {call}")
        if f.exception:
            name, off = f.exception.split("+")
            lines.append(f"  {f.regs['rsp']:016x} {name}+{int(off):#x}() [crashdrv]")
        prev = f.addr
    return lines


def function_ending_at(addr: int, folder: Path) -> tuple[str, int]:
    """The System.map function just below ``addr`` (KASLR-shifted), and addr's offset in it."""
    shift = README[folder]["kernel_offset"]
    best = None
    with lzma.open(need_fixture(folder / "System.map-6.1.0-56-amd64.xz"), "rt") as f:
        for line in f:
            value, kind, name = line.split()[:3]
            at = int(value, 16) + shift
            if kind in "tT" and at < addr and (best is None or at > best[1]):
                best = (name, at)
    assert best is not None
    return best[0], addr - best[1]


@pytest.mark.parametrize("folder,name", KASLR_DUMPS, ids=[f"{f.name}/{n}" for f, n in KASLR_DUMPS])
def test_findstack_of_the_panic_task(folder: Path, name: str) -> None:
    target = target_for(folder, name)
    want = golden_findstack(folder)
    (bt,) = parse_bt(crash_section(folder, "bt"))
    assert run(target, f"{bt.task:x}::findstack")[0].splitlines() == want
    assert run(target, "0t102::findstack")[0].splitlines() == want
    rows = [line.removeprefix("[ ").removesuffix(" ]").strip() for line in want[1:]]
    assert run(target, "$c")[0].splitlines() == [r.split(" ", 1)[1] for r in rows]   # current at open
    assert run(target, "$C")[0].splitlines() == rows


@pytest.mark.parametrize("folder,name", KASLR_DUMPS[:1], ids=[f"{KASLR.name}/{KASLR_DUMPS[0][1]}"])
def test_findstack_v_shows_crashs_registers(folder: Path, name: str) -> None:
    """x86-64 keeps no arguments: -v shows each exception frame's pt_regs, crash's block."""
    target = target_for(folder, name)
    out = run(target, "::findstack -v")[0].splitlines()   # every task; the panic task's part
    bt = crash_section(folder, "bt")
    start = out.index(f"stack pointer for thread {README[folder]['panic_task']:x}: "
                      f"{int(golden_findstack(folder)[0].split()[-1], 16):x}")
    mine = out[start:start + 40]
    exc = bt.index("    [exception RIP: crashdrv_widget_bump+5]")
    assert ["    " + line for line in bt[exc + 1:exc + 8]] == [x for x in mine if x.startswith("        ")][:7]
    user = bt[-7:]
    assert ["    " + line for line in user] == [x for x in mine if x.startswith("        ")][7:14]


def test_threadlist_of_the_panic_task() -> None:
    """mdb's columns: ADDR, PROC (its thread-group leader: crashapp.c starts no threads, so
    itself), LWP (pid), CMD/LWPID (comm/pid); -v: state and CPU from crash's ps, then its
    stack as ::findstack shows it, without the frame addresses."""
    target = target_for(KASLR, "dump.202611221942")
    assert "pthread" not in need_fixture(KASLR / "crashapp.c").read_text()
    row = next(r for r in crash_ps(KASLR) if r.comm == "crashapp")
    out = run(target, "::threadlist")[0].splitlines()
    assert out[0] == "            ADDR             PROC      LWP CMD/LWPID"
    assert f"{row.task:16x} {row.task:16x} {row.pid:>8} crashapp/{row.pid}" in out
    assert len(out) == 1 + len(crash_ps(KASLR))
    want = golden_findstack(KASLR)
    top = want[1].split()[2].rstrip("()")
    verbose = run(target, f"{row.task:x}::threadlist -v")[0].splitlines()
    assert verbose == ["            ADDR             PROC      LWP ST CPU",
                       f"{row.task:16x} {row.task:16x} {row.pid:>8} {row.state} {row.cpu:>3}",
                       f"  PC: {top}    CMD: crashapp", "  " + want[0], "  " + want[1],
                       *["    " + line.strip().split(" ", 1)[1] for line in want[2:]]]


def test_threadlist_kernel_threads_show_their_function() -> None:
    """A kernel thread's CMD/LWPID is the function below kthread() in crash's trace."""
    target = target_for(KASLR, "dump.202611221942")
    crash = {t.task: t for t in parse_bt(crash_section(KASLR, "foreach bt"))}
    out = run(target, "::threadlist")[0].splitlines()[1:]
    checked = 0
    for line in out:
        addr, _, _, cmd = line.split()
        names = [f.name for f in crash[int(addr, 16)].frames]
        if "kthread" in names:
            assert cmd == names[names.index("kthread") - 1] + "()"
            checked += 1
    assert checked >= 40


# -- bad input, through the dcmds ------------------------------------------------------------

def fresh(name: str = "dump.202611221942") -> Target:
    """A target of its own: these tests replace its unwinder."""
    return open_target(str(need_fixture(KASLR / name)), config=Config())


def damage(target: Target, patches: dict[int, int], finder: OrcFinder | None = None) -> None:
    kernel = target.os
    u = kernel.unwinder                                      # type: ignore[attr-defined]
    kernel._unwinder = KernelUnwinder(Overlay(u.mem, words(patches)), finder or u.orc, u.stacks,  # type: ignore[attr-defined]
                                      u.task_offsets, u.thread_size, u.ret_from_fork, u.describe)


def crash_blocks() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for line in crash_section(KASLR, "foreach bt"):
        if line.startswith("PID:"):
            task = int(line.split("TASK: ")[1].split()[0], 16)
            out[task] = [line]
        elif line:
            out[task].append(line)
    return out


def test_zeroed_return_address_stops_one_stack() -> None:
    """init's stack with a return address zeroed: its bt stops there with one line, and
    every other task's bt is still crash's."""
    target = fresh()
    theirs = crash_blocks()
    init = next(t for t, lines in theirs.items() if lines[0].startswith("PID: 1 "))
    slot = int(theirs[init][3].split("[")[1].split("]")[0], 16)     # do_wait's return address
    damage(target, {slot: 0})
    out = run(target, "foreach bt")[0]
    blocks = {int(b.split("TASK: ")[1].split()[0], 16): b.splitlines() for b in out.strip().split("\n\n")}
    assert blocks[init] == theirs[init][:3] + [
        f"pmdb: bt: backtrace stopped: return address 0x0 at {slot:#x} is not kernel text"]
    same = [t for t in theirs if t != init and blocks[t] == theirs[t]]
    assert len(same) >= len(theirs) - 2                # all but init and the stopped CPU's stale frame
    lines = run(target, "::walk thread | ::findstack")[0].splitlines()
    assert f"pmdb: task {init:x}: backtrace stopped: return address 0x0 at {slot:#x} is not kernel text" in lines
    assert sum(1 for x in lines if x.startswith("stack pointer for thread ")) == len(theirs)


def test_not_a_task_is_one_line() -> None:
    """An address that is no task_struct: one line, and the next task named still shows."""
    target = target_for(KASLR, "dump.202611221942")
    jiffies = target.symbols.lookup("jiffies")
    assert jiffies is not None
    theirs = crash_blocks()
    out = run(target, f"bt {jiffies.addr:x} 2")[0].splitlines()
    assert out[0].startswith(f"pmdb: bt: corrupt data at {jiffies.addr:#x}: not a task: ")
    kthreadd = next(t for t, lines in theirs.items() if lines[0].startswith("PID: 2 "))
    assert out[2:] == theirs[kthreadd]
    _, err = run(target, f"{jiffies.addr:x}::findstack")
    assert err.count("\n") == 1 and "not a task" in err
    out = run(target, "bt 99999 1")[0].splitlines()
    assert out[0] == "pmdb: bt: invalid task or pid value: 99999" and out[1].startswith("PID: 1 ")


def test_missing_orc_stops_the_panic_stack_only() -> None:
    """Without crashdrv's ORC table the panic task stops in the module with the reason; the
    other tasks' stacks are whole."""
    target = fresh()
    u = target.os.unwinder                                    # type: ignore[attr-defined]
    mods = [(m.base, m.base + m.size) for m in target.os.km.modules]  # type: ignore[attr-defined]
    damage(target, {}, OrcFinder([u.orc.tables[0]], mods))
    out = run(target, "bt")[0].splitlines()
    theirs = crash_section(KASLR, "bt")
    exc = theirs.index("    [exception RIP: crashdrv_widget_bump+5]")
    assert out[:exc + 8] == theirs[:exc + 8]                   # up to the exception block
    (reason,) = out[exc + 8:]
    assert reason.startswith("pmdb: bt: backtrace stopped: no ORC entry for crashdrv`crashdrv_widget_bump+0x5")
    groups = parse_stacks(run(target, "::stacks -v")[0])
    assert sum(g[1] for g in groups) == len(crash_ps(KASLR))
    stopped = [g for g in groups if any("(stopped:" in f for f in g[3])]
    assert [g[2] for g in stopped] == [[README[KASLR]["panic_task"]]]


def test_regs_of_a_task_by_address_or_pid() -> None:
    """addr::regs: the panic task's CPU registers (drgn read the same from the notes); a
    sleeping task's registers from the frame it left at thread.sp: rip is the return into
    __schedule crash's bt shows as #0, rsp just above that slot."""
    target = target_for(KASLR, "vmcore.elf.zst")
    drgn = need_fixture(KASLR / "drgn-oracle.txt").read_text()
    cpu1 = re.search(r"cpu1: RIP 0x([0-9a-f]+) \S+\s+RSP 0x([0-9a-f]+)", drgn)
    assert cpu1 is not None
    for ident in ("0t102", f"{README[KASLR]['panic_task']:x}"):
        out = run(target, f"{ident}::regs")[0]
        assert re.search(rf"%rip\s+= 0x{cpu1[1]:0>16} delay_tsc\+0x60", out)
        assert re.search(rf"%rsp\s+= 0x{cpu1[2]:0>16}", out)
    init = next(t for t in parse_bt(crash_section(KASLR, "foreach bt")) if t.pid == 1)
    out = run(target, "0t1::regs")[0]                     # pid 1, not the first task in the list
    assert re.search(rf"%rip\s+= 0x{init.frames[0].pc:016x} __schedule\+", out)
    assert re.search(rf"%rsp\s+= 0x{init.frames[0].addr + 8:016x}", out)


def test_bt_json_records() -> None:
    """--json: one record per crash frame, with crash's [addr] and function, and the
    exception frame's registers as fields."""
    import io
    import json

    from pmdb.session import Session

    target = target_for(KASLR, "dump.202611221942")
    out = io.StringIO()
    Session(target, stdout=out, stderr=io.StringIO(), json_mode=True).run_line("bt")
    records = json.loads(out.getvalue())["records"]     # one JSON line per command
    (bt,) = parse_bt(crash_section(KASLR, "bt"))
    frames = [r for r in records if "level" in r]
    assert [(int(r["addr"], 16), r["function"]) for r in frames] == [(f.addr, f.name) for f in bt.frames]
    exc = next(r for r in records if r.get("exception_rip") == "crashdrv_widget_bump+5")
    crashing = next(f for f in bt.frames if f.exception)
    assert {k: int(exc[k], 16) for k in crashing.regs} == crashing.regs
