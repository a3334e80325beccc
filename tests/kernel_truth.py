"""pmdb's commands against the guest kernel's own /proc, for any kernel the lab dumped.

The lab records, just before each crash, the guest's /proc (tasks/PID/{stat,stack},
slabinfo, modules, ...) beside the dump in ``truth/``, and the serial console in
``console.log``. These helpers read those files directly and compare them with what
pmdb's dcmds print on the dump: each returns what matched and what did not, so a test
(or a person at a prompt) sees every difference at once, for any kernel version.

Where the truth and the dump may honestly differ: tasks that ran between the record
and the crash (the trigger's own ``cat``s, kworkers that came or went), a running
task's stack (it moved on), and slab counts (they changed). Only what both sides hold
is compared, and only fields that cannot have changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from pmdb.os.linux.slab.slub import slub_model
from pmdb.target import Target
from tests.linux_session import PsRow, parse_ps, run
from tests.vmlab.truth import Task, load_truth

T = TypeVar("T")

LAB_CACHE = Path(os.environ.get("PMDB_LAB_CACHE", "~/.cache/pmdb-lab")).expanduser()
_FRAME = re.compile(r"^\[?\s*[0-9a-f]+\s+([^\s+(]+)")
_STATE = {"R": "RU", "S": "IN", "D": "UN", "T": "ST", "t": "TR", "Z": "ZO", "X": "DE", "I": "ID"}
_COMM_LEN = 16              # TASK_COMM_LEN, with its NUL
_LOG_LINE = re.compile(r"^\[\s*\d+\.\d+\] (.*)$")


def lab_dump(release: str, scenario: str) -> Path:
    """Where the lab keeps one kernel's dumps of one scenario."""
    return LAB_CACHE / "dumps" / release / scenario


# every Debian kernel line the lab pins (tests/vmlab/kernels.toml), by the dump file to read:
# makedumpfile's -d 31 dump where Debian 12's makedumpfile (1.7.2) knows the kernel's page
# flags; QEMU's ELF dump where it does not (on 6.12 and later it drops slab pages, task
# structs among them, as if they were free)
FILTERED, WHOLE = "vmcore.mdf", "vmcore.elf"
KERNELS = {"5.10.0-32-amd64": FILTERED, "6.1.0-57-amd64": FILTERED, "6.12.95+deb12-amd64": WHOLE,
           "6.12.117+deb13-amd64": WHOLE, "7.2.13+deb14-amd64": WHOLE}


def need_lab_dump(release: str, scenario: str, name: str = "vmcore.mdf") -> Path:
    """One lab dump's folder; skip when the lab has not made it, or fail when
    PMDB_REQUIRE_FIXTURES=1 or PMDB_REQUIRE_LAB_DUMPS=1 (CI makes the sysrq and null
    dumps of every kernel before the tests: .ci/run)."""
    folder = lab_dump(release, scenario)
    if not (folder / name).exists() or not (folder / "truth").is_dir():
        if "1" in (os.environ.get("PMDB_REQUIRE_LAB_DUMPS"), os.environ.get("PMDB_REQUIRE_FIXTURES")):
            pytest.fail(f"required lab dump missing: {folder / name}")
        pytest.skip(f"lab dump not made: {folder / name} (run the kernel lab)")
    return folder


def need_dbg_vmlinux(release: str) -> Path:
    """A kernel's debug vmlinux: Debian's -dbg package installed (/usr/lib/debug/boot), else
    the lab's copy (``python -m tests.vmlab dbg``, which .ci/run runs). Skipped or failed as
    need_lab_dump is."""
    for path in (Path("/usr/lib/debug/boot") / f"vmlinux-{release}",
                 LAB_CACHE / "kernels" / release / "dbg" / f"vmlinux-{release}"):
        if path.is_file():
            return path
    if "1" in (os.environ.get("PMDB_REQUIRE_LAB_DUMPS"), os.environ.get("PMDB_REQUIRE_FIXTURES")):
        pytest.fail(f"required debug vmlinux missing: vmlinux-{release}")
    pytest.skip(f"no debug vmlinux of {release} (python -m tests.vmlab dbg {release})")


@dataclass
class Agreement:
    """What matched, and each difference as one readable line."""

    matched: int = 0
    differences: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.differences


# -- the truth ---------------------------------------------------------------------

def truth_tasks(truth: Path) -> dict[int, Task]:
    """Every task /proc listed (threads included), by its own id."""
    return {t.tid: t for t in load_truth(truth).all_tasks()}


def console_messages(dump_dir: Path) -> list[str]:
    """The kernel's messages on the serial console (its timestamped lines), text only."""
    text = (dump_dir / "console.log").read_text(errors="replace")
    return [m.group(1).rstrip() for line in text.splitlines() if (m := _LOG_LINE.match(line))]


# -- comparisons ---------------------------------------------------------------------

def _ps_rows(target: Target) -> dict[int, PsRow]:
    """::ps's rows by pid (the idle tasks, pid 0, left out: /proc lists none)."""
    return {r.pid: r for r in parse_ps(run(target, "::ps")[0].splitlines()) if r.pid}


def _same_comm(pmdb: str, proc: str) -> bool:
    """Whether /proc's name is the task's comm: /proc shows a kworker's comm with its
    current work's description appended ("kworker/0:1-events", "kworker/0:2+events" while
    it runs that work: wq_worker_comm(), since
    4.18), and a kernel thread's full name where ``comm`` keeps 15 characters
    (kthread's full_name, since 6.1)."""
    if proc == pmdb:
        return True
    if pmdb.startswith("kworker/") and proc.startswith((pmdb + "-", pmdb + "+")):   # '+': running it
        return True
    return len(pmdb) == _COMM_LEN - 1 and proc.startswith(pmdb)


def compare_ps(target: Target, truth: Path) -> Agreement:
    """::ps against /proc/PID/stat: pid, ppid, state and comm of every task in both. A task
    on a CPU at the crash (``>``) was the recorder or the trigger a moment before: its
    state is left out; so is a difference between running (RU) or being woken (WA,
    TASK_WAKING: another CPU is in try_to_wake_up for it) and a sleep: a kernel thread
    woken between the record and the crash (a kworker, rcu_preempt) still waits for a CPU,
    and one running on the other CPU then may sleep by the crash."""
    rows = _ps_rows(target)
    agree = Agreement()
    for pid, task in sorted(truth_tasks(truth).items()):
        row = rows.get(pid)
        if row is None:
            continue                # exited between the record and the crash
        state = _STATE.get(task.state, task.state)
        comm = row.comm.strip("[]")
        woken = bool({"RU", "WA"} & {row.state, state})   # ran, or was woken, between record and crash
        if row.ppid == task.ppid and (row.active or woken or row.state == state) and _same_comm(comm, task.comm):
            agree.matched += 1
        else:
            agree.differences.append(f"pid {pid}: pmdb {(row.ppid, row.state, comm)}, "
                                     f"/proc {(task.ppid, state, task.comm)}")
    return agree


def is_subsequence(want: Sequence[T], have: Sequence[T]) -> bool:
    """Whether ``want``'s items appear in ``have`` in order (pmdb shows more frames:
    the scheduler's own, callers /proc leaves out)."""
    it = iter(have)
    return all(item in it for item in want)


def stack_names(target: Target, pid: int) -> list[str]:
    """The function names of pmdb's ::findstack of a task, innermost first."""
    out = run(target, f"0t{pid}::findstack")[0].splitlines()
    return [m.group(1) for line in out[1:] if (m := _FRAME.match(line.strip()))]


def _function(target: Target, name: str) -> int | str:
    """A function by its address, so aliases compare equal: /proc names the first alias in
    kallsyms' order (``__do_sys_pause``), pmdb prefers a global one (``__x64_sys_pause``,
    as crash does) for the same code."""
    sym = target.symbols.lookup(name)
    return sym.addr if sym is not None else name


def compare_stacks(target: Target, truth: Path) -> Agreement:
    """Each task's /proc/PID/stack as a subsequence of its ::findstack, sleeping or not.
    Left out: tasks on a CPU at the crash (their stacks moved on since the record), tasks
    /proc gave no stack, tasks gone before the crash, and a task whose stack differs but
    that was switched to since the record (its context-switch count in the dump is not
    /proc/PID/status's: it woke and slept again, elsewhere)."""
    rows = _ps_rows(target)
    agree = Agreement()
    for pid, task in sorted(truth_tasks(truth).items()):
        row = rows.get(pid)
        if not task.stack or row is None or row.active:
            continue
        have = stack_names(target, pid)
        if is_subsequence([_function(target, n) for n in task.stack],
                          [_function(target, n) for n in have]):
            agree.matched += 1
        elif task.switches is None or _switches(target, row.task) == task.switches:
            agree.differences.append(f"pid {pid} ({task.comm}): /proc {task.stack}, pmdb {have}")
    return agree


def _switches(target: Target, task: int) -> int | None:
    """The task's nvcsw + nivcsw in the dump."""
    out = run(target, f"{task:x}::print task_struct nvcsw nivcsw")[0]
    found = [int(v, 0) for v in re.findall(r"= (0x[0-9a-f]+|\d+)", out)]
    return sum(found) if len(found) == 2 else None


def compare_msgbuf(target: Target, dump_dir: Path) -> Agreement:
    """Every kernel message on the console is a line of ::msgbuf (the ring holds more:
    the console only prints what passes its log level)."""
    have = {line.rstrip() for line in run(target, "::msgbuf")[0].splitlines()}
    have |= {m.group(1).rstrip() for line in have if (m := _LOG_LINE.match(line))}
    agree = Agreement()
    for line in console_messages(dump_dir):
        if line in have:
            agree.matched += 1
        else:
            agree.differences.append(f"console line not in ::msgbuf: {line!r}")
    return agree


def compare_kmastat(target: Target, truth: Path) -> Agreement:
    """::kmastat's caches against /proc/slabinfo: the same names (slabinfo leaves merged
    aliases out the same way), and slabinfo's <objsize>, which is the slot size
    (``kmem_cache.size``; cache_show()), equal to the slab model's. ::kmastat's OBJSIZE
    column is ``object_size``, as crash's ``kmem -s`` prints it."""
    want = {name: cache.objsize for name, cache in load_truth(truth).slabs.items()}
    names = [line.split()[1] for line in run(target, "::kmastat")[0].splitlines()[1:] if line.split()]
    slots = {c.name: c.size for c in slub_model(target).caches()}
    agree = Agreement()
    for name, size in sorted(want.items()):
        if name in names and slots.get(name) == size:
            agree.matched += 1
        else:
            agree.differences.append(f"cache {name}: pmdb {slots.get(name) if name in names else None}, "
                                     f"/proc {size}")
    agree.differences += [f"cache {name} is not in /proc/slabinfo" for name in sorted(set(names) - set(want))]
    return agree


def compare_modules(target: Target, truth: Path) -> Agreement:
    """The kernel model's modules against /proc/modules: names and load addresses."""
    want = {name: module.address for name, module in load_truth(truth).modules.items()}
    have = {m.name: m.base for m in target.os.modules()}
    agree = Agreement()
    for name, addr in sorted(want.items()):
        if have.get(name) == addr:
            agree.matched += 1
        else:
            got = f"{have[name]:#x}" if name in have else None
            agree.differences.append(f"module {name}: pmdb {got}, /proc {addr:#x}")
    agree.differences += [f"module {name} is not in /proc/modules" for name in sorted(set(have) - set(want))]
    return agree


_TRACE_LINE = re.compile(r"^\s*(\?\s+)?([^\s+<>]+)\+(0x[0-9a-f]+)/0x[0-9a-f]+")
_KERNEL_RIP = re.compile(r"RIP: 0010:([^\s+]+)\+(0x[0-9a-f]+)/")
_C_FRAME = re.compile(r"^([^\s+(]+)(?:\+(0x[0-9a-f]+))?\(")     # $c prints no +0x0
_ENTRIES = ("asm_", "end_repeat_nmi")       # the entry code an exception frame follows


def console_panic_trace(dump_dir: Path) -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
    """From console.log: the reliable frames (no ``?``) of the last Call Trace, from
    ``panic`` on when it is there (dump_stack, above it, returned before the dump), and
    the kernel-mode RIP of the oops, if one faulted: (function, offset) pairs."""
    trace: list[tuple[str, int]] = []
    rip = None
    in_trace = False
    for line in console_messages(dump_dir):
        if line.startswith("Call Trace:"):
            trace, in_trace = [], True
            continue
        if (m := _KERNEL_RIP.search(line)) is not None:
            rip = (m.group(1), int(m.group(2), 16))
        m = _TRACE_LINE.match(line)
        if in_trace and m is not None:
            if not m.group(1):
                trace.append((m.group(2), int(m.group(3), 16)))
        elif in_trace and line.strip() not in ("<IRQ>", "</IRQ>", "<TASK>", "</TASK>"):
            in_trace = False
    names = [name for name, _ in trace]
    if "panic" in names:
        trace = trace[names.index("panic"):]
    return trace, rip


def _pc(target: Target, frame: tuple[str, int]) -> int | str:
    """A frame's return address, so aliases agree; ``panic``'s own frame by its function
    alone: it printed the trace from one call and went on to the one it waits in."""
    sym = target.symbols.lookup(frame[0])
    if sym is None:
        return f"{frame[0]}+{frame[1]:#x}"
    return sym.addr if frame[0] == "panic" else sym.addr + frame[1]


def compare_panic_stack(target: Target, dump_dir: Path) -> Agreement:
    """The panic task's ``$c`` against the console's Call Trace: its reliable frames in
    order (the return addresses, so aliases and offsets agree), and, after an oops, the
    faulting or interrupted RIP as the frame right after the entry code (``asm_exc_*``,
    ``asm_sysvec_*``, or the NMI entry's ``end_repeat_nmi``). A panic from NMI context prints
    no Call Trace, only the interrupted RIP."""
    trace, rip = console_panic_trace(dump_dir)
    lines = run(target, "$c")[0].splitlines()
    have = [(m.group(1), int(m.group(2) or "0", 16)) for line in lines if (m := _C_FRAME.match(line))]
    pcs = [_pc(target, f) for f in have]
    agree = Agreement()
    if trace and is_subsequence([_pc(target, f) for f in trace], pcs):
        agree.matched += len(trace)
    elif trace or rip is None:
        agree.differences.append(f"console's Call Trace {trace} is not in $c {have}")
    if rip is not None:
        at = pcs.index(_pc(target, rip)) if _pc(target, rip) in pcs else -1
        if at > 0 and have[at - 1][0].startswith(_ENTRIES):
            agree.matched += 1
        else:
            agree.differences.append(f"the oops' RIP {rip} is not after an exception entry in $c {have}")
    return agree
