"""Kernel stacks unwound from the dump alone (ORC, pt_regs, IRQ stack) against crash's bt.

Every fixture dump is opened by pmdb's readers; the task list is walked with
BTF offsets, the running tasks start from the dump's NT_PRSTATUS notes and
the others from the frame they left at thread.sp. The oracle is crash 8.0.6's
``foreach bt`` and ``bt -a`` in crash-oracle.txt (run on vmcore.elf, with the
-dbg vmlinux and its own unwinder), and crash-formats.txt for the kdump
formats.

crash's output differs from a plain ORC walk in three documented ways,
which ``crash_view`` reproduces instead of hiding:

- crash does not number the frame the CPU registers point into; for an
  active task it starts from a return address it found on the stack;
- a return address one byte past a noreturn call symbolizes at ``+0`` of the
  next function, and crash drops that frame (slub README: "crash skips its
  .cold part");
- after ``--- <IRQ stack> ---`` crash prints the stack pointer it resumed
  at on the task stack, which is 8 above the return-address slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from pmdb.arch import by_name
from pmdb.arch.prstatus import decode_prstatus
from pmdb.dumps.detect import open_dump
from pmdb.errors import CorruptionError, PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch.x86_64.orc import OrcFinder
from pmdb.os.linux.arch.x86_64.unwind import KernelUnwinder
from pmdb.os.linux.stacks.frames import crash_numbered, lookup_address, unwind_kernel_task
from pmdb.symbols.kmodules import RegistryOffsets
from pmdb.types.btf_kernel import vmlinux_btf
from pmdb.types.registry import TypeRegistry
from pmdb.unwind.frame import Frame
from tests.conftest import FIXTURES, need_fixture
from tests.fuzz.overlay import Overlay, words
from tests.linux_vmcore import KASLR, NOKASLR, Kernel, crash_sections, open_kernel

SLUB = FIXTURES / "linux-6.1-x86_64-slub"
DUMPS = [(KASLR, "vmcore.elf.zst"), (KASLR, "vmcore.kdump-zlib"), (KASLR, "dump.202611221942"),
         (KASLR, "vmcore.flat"), (NOKASLR, "dump.202611221946"), (SLUB, "dump.202611222031")]
IDS = [f"{folder.name}/{name}" for folder, name in DUMPS]

# crash's register labels -> pmdb's (NT_PRSTATUS) names
CRASH_REGS = {"RIP": "rip", "RSP": "rsp", "RFLAGS": "eflags", "RAX": "rax", "RBX": "rbx", "RCX": "rcx",
              "RDX": "rdx", "RSI": "rsi", "RDI": "rdi", "RBP": "rbp", "R8": "r8", "R9": "r9",
              "R10": "r10", "R11": "r11", "R12": "r12", "R13": "r13", "R14": "r14", "R15": "r15",
              "ORIG_RAX": "orig_rax", "CS": "cs", "SS": "ss"}


# -- crash's output, parsed ---------------------------------------------------------

@dataclass
class CrashFrame:
    addr: int
    name: str
    pc: int
    module: str = ""
    after_irq: bool = False                  # "--- <IRQ stack> ---" came just before it
    exception: str = ""                      # "[exception RIP: sym+off]" printed after it
    regs: dict[str, int] = field(default_factory=dict)   # the register block after it


@dataclass
class CrashTask:
    pid: int
    task: int
    cpu: int
    comm: str
    frames: list[CrashFrame] = field(default_factory=list)
    lead: dict[str, int] = field(default_factory=dict)   # registers printed before frame #0
    lead_exception: str = ""


_HEAD = re.compile(r'PID: (\d+)\s+TASK: ([0-9a-f]+)\s+CPU: (\d+)\s+COMMAND: "(.*)"')
_FRAME = re.compile(r"\s*#\d+ \[([0-9a-f]+)\] (\S+) at ([0-9a-f]+)(?: \[(\S+)\])?")
_PAIR = re.compile(r"([A-Z0-9_]+): ([0-9a-f]+)")


def parse_bt(lines: list[str]) -> list[CrashTask]:
    """crash's bt / foreach bt output: tasks, numbered frames, exception and user registers."""
    tasks: list[CrashTask] = []
    irq = False
    for line in lines:
        if m := _HEAD.match(line):
            tasks.append(CrashTask(int(m[1]), int(m[2], 16), int(m[3]), m[4]))
        elif m := _FRAME.match(line):
            tasks[-1].frames.append(CrashFrame(int(m[1], 16), m[2], int(m[3], 16), m[4] or "", irq))
            irq = False
        elif "<IRQ stack>" in line:
            irq = True
        elif m := re.search(r"\[exception RIP: (\S+)\]", line):
            if tasks[-1].frames:
                tasks[-1].frames[-1].exception = m[1]
            else:
                tasks[-1].lead_exception = m[1]
        elif pairs := _PAIR.findall(line):
            target = tasks[-1].frames[-1].regs if tasks[-1].frames else tasks[-1].lead
            target.update({CRASH_REGS[k]: int(v, 16) for k, v in pairs if k in CRASH_REGS})
    return tasks


def crash_tasks(folder: Path, command: str) -> list[CrashTask]:
    return parse_bt(next(s for s in crash_sections(folder, command) if s and s[0].startswith("PID:")))


# -- the dump, opened by pmdb ------------------------------------------------------------

@dataclass
class World:
    folder: Path
    kernel: Kernel
    offsets: RegistryOffsets
    unwinder: KernelUnwinder
    running: dict[int, dict[str, int]]      # task -> its CPU's registers
    cpus: dict[int, int]                    # task -> the CPU it was running on

    def lookup(self, name: str) -> int | None:
        sym = self.kernel.km.symbols.lookup(name)
        return sym.addr if sym is not None else None

    def unwind(self, task: int) -> list[Frame]:
        return unwind_kernel_task(self.unwinder, task, self.running.get(task))

    def name(self, addr: int) -> tuple[str, int, str]:
        """(function, offset, module) as crash names an address: the address itself."""
        hit = self.kernel.km.symbols.resolve(addr)
        assert hit is not None, f"{addr:#x} has no symbol"
        sym, off = hit
        return sym.name, off, sym.module or ""


@cache
def open_world(path: Path) -> World:
    kernel = open_kernel(path)
    km = kernel.km
    lookup = kernel.by_name.get
    registry = TypeRegistry()
    registry.add_source(vmlinux_btf(kernel.space, lookup))
    offsets = RegistryOffsets(registry)
    km.load_modules(offsets)
    unwinder = KernelUnwinder.build(kernel.space, lookup, kernel.layout, offsets, km.modules,
                                    kernel.info.osrelease, km.symbols.describe)
    dump = open_dump(str(path))
    arch = by_name("x86_64")
    notes = [decode_prstatus(n.desc, arch).registers for n in dump.notes if n.name == "CORE" and n.type == 1]
    running, cpus = {}, {}
    current = lookup("current_task")          # a per-CPU variable in 6.1 (pcpu_hot from 6.2)
    assert current is not None
    for cpu, regs in enumerate(notes):
        task = kernel.space.ptr(current + kernel.layout.per_cpu_offset(cpu))
        running[task], cpus[task] = regs, cpu
    return World(path.parent, kernel, offsets, unwinder, running, cpus)


@pytest.fixture(scope="module", params=DUMPS, ids=IDS)
def world(request: pytest.FixtureRequest) -> World:
    folder, name = request.param
    return open_world(need_fixture(folder / name))


def kaslr_world(name: str = "vmcore.elf.zst") -> World:
    return open_world(need_fixture(KASLR / name))


def task_list(w: World) -> list[int]:
    """Every task: init_task's tasks ring, each group's threads, each CPU's idle task."""
    mem, o = w.kernel.space, w.offsets
    init = w.lookup("init_task")
    assert init is not None
    tasks_off, node_off = o.offsetof("task_struct", "tasks"), o.offsetof("task_struct", "thread_node")
    signal_off, head_off = o.offsetof("task_struct", "signal"), o.offsetof("signal_struct", "thread_head")
    out = [init]
    for leader in ring(mem, init + tasks_off, tasks_off):
        out.extend(ring(mem, mem.ptr(leader + signal_off) + head_off, node_off))
    runqueues, idle_off = w.lookup("runqueues"), o.offsetof("rq", "idle")
    assert runqueues is not None
    for cpu in range(1, w.kernel.layout.nr_cpu_ids):
        out.append(mem.ptr(runqueues + w.kernel.layout.per_cpu_offset(cpu) + idle_off))
    return out


def ring(mem: AddressSpace, head: int, offset: int) -> list[int]:
    out, node = [], mem.ptr(head)
    while node != head:
        out.append(node - offset)
        node = mem.ptr(node)
        assert len(out) < 10000
    return out


# -- pmdb's frames the way crash numbers them ---------------------------------------

def crash_view(w: World, frames: list[Frame]) -> list[CrashFrame]:
    """Our frames as crash prints them (see the module docstring for the three rules)."""
    def offset_of(addr: int) -> int | None:
        hit = w.kernel.km.symbols.resolve(addr)
        return hit[1] if hit is not None else None

    numbered = crash_numbered(frames, offset_of)
    out: list[CrashFrame] = []
    for f, addr in numbered:
        name, _, module = w.name(f.pc)
        out.append(CrashFrame(addr, name, f.pc, module, addr == f.sp))
    by_frame = {id(f): c for (f, _), c in zip(numbered, out, strict=True)}
    last: CrashFrame | None = None
    for f in frames:
        if id(f) in by_frame:
            last = by_frame[id(f)]
        elif f.exception is not None and last is not None:
            name, off, _ = w.name(f.pc) if f.stack_name != "user" else ("", 0, "")
            last.exception = f"{name}+{off}" if name else ""
            last.regs = dict(f.exception)
    return out


def same_frames(ours: list[CrashFrame], theirs: list[CrashFrame]) -> None:
    got = [(hex(f.addr), f.name, hex(f.pc), f.module, f.after_irq, f.exception) for f in ours]
    want = [(hex(f.addr), f.name, hex(f.pc), f.module, f.after_irq, f.exception) for f in theirs]
    assert got == want
    for a, b in zip(ours, theirs, strict=True):
        assert {k: a.regs.get(k) for k in b.regs} == b.regs, f"registers after {b.name}"


# -- the tests --------------------------------------------------------------------------

def test_task_list_is_crashs(world: World) -> None:
    """The tasks walked with BTF offsets are exactly the tasks crash's foreach bt shows."""
    crash = {t.task for t in crash_tasks(world.folder, "foreach bt")}
    ours = task_list(world)
    assert len(ours) == len(set(ours)) and set(ours) == crash and len(ours) >= 60


def test_foreach_bt(world: World) -> None:
    """Every sleeping task: frames, [addr] column, exception and user registers as crash's."""
    checked = 0
    for ct in crash_tasks(world.folder, "foreach bt"):
        if ct.task in world.running:
            continue                       # crash's own heuristics; see the tests below
        frames = world.unwind(ct.task)
        assert frames[0].method == "regs" and all(f.method in ("orc", "exception") for f in frames[1:])
        assert not frames[-1].note, f"pid {ct.pid}: {frames[-1].note}"
        same_frames(crash_view(world, frames), ct.frames)
        checked += 1
    assert checked >= 57


def test_running_tasks(world: World) -> None:
    """On-CPU tasks start from the NT_PRSTATUS registers; after the frame they point into,
    everything equals crash's trace (which begins at a return address it found)."""
    by_task = {t.task: t for t in crash_tasks(world.folder, "foreach bt")}
    assert len(world.running) == 2
    for task, regs in world.running.items():
        frames = world.unwind(task)
        assert (frames[0].pc, frames[0].sp, frames[0].method) == (regs["rip"], regs["rsp"], "regs")
        assert frames[0].regs == regs and not frames[-1].note
        ours, theirs = crash_view(world, frames), by_task[task].frames
        assert len(theirs) - len(ours) in (0, 1)
        same_frames(ours, theirs[len(theirs) - len(ours):])
        if len(theirs) > len(ours):
            # ELF: crash began at a stale copy of the interrupted function's return address
            # (stop_this_cpu), below the stack pointer the CPU had
            assert theirs[0].name == world.name(frames[0].pc)[0] and theirs[0].addr < frames[0].sp


def test_panic_task_is_crashs_bt(world: World) -> None:
    """The oops: exception RIP crashdrv_widget_bump+5 with crash's registers, then the module
    frame, the syscall path and the user registers (KASLR and nokaslr fixtures)."""
    if world.folder == SLUB:
        pytest.skip("the slub fixture panics without an exception frame")
    (bt,) = crash_tasks(world.folder, "bt")
    frames = world.unwind(bt.task)
    exc = [f for f in frames if f.exception is not None]
    assert [f.stack_name for f in exc] == ["task", "user"]
    assert world.name(exc[0].pc)[:2] == ("crashdrv_widget_bump", 5)
    crashing = next(f for f in bt.frames if f.exception)
    assert crashing.exception == "crashdrv_widget_bump+5" and exc[0].exception == crashing.regs
    after = [world.name(f.pc) for f in frames[frames.index(exc[0]) + 1:-1]]
    assert after == [("crashdrv_null_pointer", 0x24, "crashdrv"), ("__x64_sys_ioctl", 0x90, ""),
                     ("do_syscall_64", 0x5D, ""), ("entry_SYSCALL_64_after_hwframe", 0x6E, "")]
    assert frames[-1].exception == bt.frames[-1].regs and frames[-1].exception["cs"] & 3 == 3


def test_bt_a_irq_stack(world: World) -> None:
    """bt -a: the CPU stopped by the panic IPI unwinds from its IRQ stack, through
    sysvec_reboot's switch, onto the idle task's stack, as crash's bt -a shows."""
    tasks = crash_tasks(world.folder, "bt -a")
    assert sorted(world.cpus.values()) == sorted(t.cpu for t in tasks) == [0, 1]
    stopped = next(t for t in tasks if t.frames[0].name == "stop_this_cpu")
    frames = world.unwind(stopped.task)
    stacks = [f.stack_name for f in frames]
    switch = stacks.index("task")
    assert stacks[:switch] == ["IRQ"] * switch and set(stacks[switch:]) == {"task"}
    irq = world.unwinder.stacks.find(frames[0].sp)
    assert irq is not None and irq.name == "IRQ" and irq.cpu == world.cpus[stopped.task]
    assert world.name(frames[switch - 1].pc)[0] == "sysvec_reboot"
    assert world.name(frames[switch].pc)[0] == "asm_sysvec_reboot"
    marked = [f.name for f in crash_view(world, frames) if f.after_irq]
    assert marked == [f.name for f in stopped.frames if f.after_irq] == ["asm_sysvec_reboot"]


def test_kdump_formats_registers_are_crashs() -> None:
    """On the kdump formats crash prints the stopped CPU's registers as an exception frame
    (crash-formats.txt); they are the registers pmdb starts that CPU's stack from."""
    text = need_fixture(KASLR / "crash-formats.txt").read_text()
    diff = text.split("vmcore.elf vs vmcore.kdump-zlib:")[1].split("--- diff")[0]
    block = [line[2:] for line in diff.splitlines() if line.startswith("> ")]
    (ct,) = parse_bt(['PID: 0 TASK: 0 CPU: 0 COMMAND: "x"'] + block)
    assert ct.lead_exception == "stop_this_cpu+107"
    w = kaslr_world("vmcore.kdump-zlib")
    task = next(t for t, cpu in w.cpus.items() if cpu == 0)
    first = w.unwind(task)[0]
    assert {k: first.regs[k] for k in ct.lead} == ct.lead
    assert w.name(first.pc)[:2] == ("stop_this_cpu", 107)


@pytest.mark.parametrize("folder,name", [DUMPS[0], DUMPS[2]], ids=[IDS[0], IDS[2]])
def test_every_task_from_a_fresh_open(folder: Path, name: str) -> None:
    """All tasks of a freshly opened dump, ORC tables and stacks read for the first time
    (uncached pages of a compressed dump included), each to its end. How fast is the
    benchmark's to say (python -m bench: the stacks section), not a timed test's."""
    path = need_fixture(folder / name)
    w = open_world.__wrapped__(path)           # not the shared, already warm one
    tasks = task_list(w)
    unwinder = KernelUnwinder.build(w.kernel.space, w.kernel.by_name.get, w.kernel.layout, w.offsets,
                                    w.kernel.km.modules, w.kernel.info.osrelease)
    frames = [unwinder.unwind_task(t, w.running.get(t)) for t in tasks]
    assert len(frames) >= 60 and not any(f[-1].note for f in frames)


# -- bad input ----------------------------------------------------------------------------

def patched(w: World, patches: dict[int, int], finder: OrcFinder | None = None) -> KernelUnwinder:
    u = w.unwinder
    return KernelUnwinder(Overlay(w.kernel.space, words(patches)), finder or u.orc, u.stacks, u.task_offsets,
                          u.thread_size, u.ret_from_fork, u.describe)


def sleeping(w: World, pid: int) -> tuple[int, list[Frame]]:
    ct = next(t for t in crash_tasks(w.folder, "foreach bt") if t.pid == pid)
    return ct.task, w.unwind(ct.task)


def test_zeroed_return_address_stops_that_stack() -> None:
    w = kaslr_world()
    task, good = sleeping(w, 1)
    slot = good[3].slot
    assert slot is not None
    u = patched(w, {slot: 0})
    bad = u.unwind_task(task)
    assert [f.pc for f in bad] == [f.pc for f in good[:3]]
    assert bad[-1].note == f"return address 0x0 at {slot:#x} is not kernel text"
    other, expected = sleeping(w, 2)                      # the next task is untouched
    assert [f.pc for f in u.unwind_task(other)] == [f.pc for f in expected]


def test_looping_exception_frame_stops() -> None:
    """pt_regs whose saved rsp points back down the stack would loop: stopped, with why."""
    w = kaslr_world()
    (bt,) = crash_tasks(KASLR, "bt")
    good = w.unwind(bt.task)
    i = next(i for i, f in enumerate(good) if f.exception is not None)
    regs_at = good[i - 1].sp                             # asm_exc_page_fault's pt_regs
    u = patched(w, {regs_at + 8 * 19: good[i - 1].sp - 0x100})       # pt_regs.sp
    bad = u.unwind_task(bt.task, w.running[bt.task])
    assert len(bad) == i and bad[-1].note.startswith("stack going in the wrong direction")


def test_irq_stack_link_back_to_itself_stops() -> None:
    """The IRQ stack's saved stack pointer patched to point into the IRQ stack again."""
    w = kaslr_world()
    task = next(t for t, cpu in w.cpus.items() if cpu == 0)
    good = w.unwind(task)
    irq = w.unwinder.stacks.find(good[0].sp)
    assert irq is not None
    bad = patched(w, {irq.hi - 8: good[0].sp - 0x40}).unwind_task(task, w.running[task])
    assert [f.stack_name for f in bad] == ["IRQ"] * len(bad) and bad[-1].note
    assert "wrong direction" in bad[-1].note or "no known stack" in bad[-1].note


def test_not_a_task_is_one_error() -> None:
    w = kaslr_world()
    jiffies = w.lookup("jiffies")
    assert jiffies is not None
    with pytest.raises(CorruptionError, match="not a task"):
        w.unwind(jiffies)
    with pytest.raises(PmdbError):
        w.unwind(0xDEAD000000000000)


def test_missing_orc_for_a_module_stops_with_reason() -> None:
    """Without crashdrv's ORC table the frame-pointer guess leads nowhere: one line says so."""
    w = kaslr_world()
    vmlinux = w.unwinder.orc.tables[0]
    mods = [(m.base, m.base + m.size) for m in w.kernel.km.modules]
    (bt,) = crash_tasks(KASLR, "bt")
    frames = patched(w, {}, OrcFinder([vmlinux], mods)).unwind_task(bt.task, w.running[bt.task])
    assert w.name(frames[-1].pc)[:2] == ("crashdrv_widget_bump", 5)
    assert frames[-1].note.startswith("no ORC entry for crashdrv`crashdrv_widget_bump+0x5")


def test_lost_thread_sp_falls_back_to_scanning() -> None:
    w = kaslr_world()
    task, good = sleeping(w, 92)
    offs = w.unwinder.task_offsets
    assert offs is not None
    frames = patched(w, {task + offs.thread_sp: 0}).unwind_task(task)
    assert frames[0].method == "scan" and "thread.sp" in frames[0].note
    assert all(w.unwinder.stacks.find(f.sp, w.unwinder.task_stack(task)) or f.stack_name == "user"
               for f in frames)
    assert frames[-1].pc == good[-1].pc                  # it still reaches the user registers


def test_return_address_past_a_noreturn_call_names_its_caller() -> None:
    """slub README: add_taint.cold's return address is one byte past its end and symbolizes
    as check_panic_on_warn.cold+0x0; looked up at address - 1 it is add_taint.cold's."""
    w = open_world(need_fixture(SLUB / "dump.202611222031"))
    panic = next(t for t in w.running if w.name(w.unwind(t)[1].pc)[0] == "panic")
    frames = w.unwind(panic)
    (past,) = [f for f in frames[1:] if f.slot is not None and w.name(f.pc)[1] == 0]
    assert f"{past.pc:#x}" == "0xffffffffa0e01fd6"
    assert w.name(past.pc)[0] == "check_panic_on_warn.cold"
    assert w.name(lookup_address(past))[0] == "add_taint.cold"
    assert lookup_address(frames[0]) == frames[0].pc          # CPU registers: an exact pc


def test_target_stack_is_the_unwinders() -> None:
    """Through the opened Target: every thread's stack is the unwinder's, the panic thread
    (current at open) included, for every task of the list."""
    from pmdb.config import Config
    from pmdb.opener import open_target
    from pmdb.os.linux.kernel import LinuxKernel

    path = need_fixture(KASLR / "dump.202611221942")
    w = open_world(path)
    target = open_target(str(path), config=Config())
    stacks = {t.address: target.stack(t) for t in target.threads()}
    assert set(stacks) == set(task_list(w))
    for task, frames in stacks.items():
        assert task is not None
        assert [(f.pc, f.sp, f.method) for f in frames] == [(f.pc, f.sp, f.method) for f in w.unwind(task)]
    init_pid1 = 0xFFFF8BE1011FC8C0             # crash's ps: pid 1, sleeping in wait4
    assert isinstance(target.os, LinuxKernel)
    assert unwind_kernel_task(target.os, init_pid1, None)[-1].pc == stacks[init_pid1][-1].pc
    current = target.current_thread
    assert current is not None and current.name == "crashapp"
    assert any(f.exception and f.pc == 0xFFFFFFFFC023B188 for f in stacks[current.address or 0])


def test_cpu_stacks_are_where_the_tss_points(world: World) -> None:
    """Each CPU's IST stacks end where its TSS's ist[] entries point (the CPU switches to
    those tops on #DF, NMI, #DB, #MC, #VC) and its entry stack where tss.sp0 points; the IRQ
    stack holds the interrupted stack pointer in its top word."""
    mem, o, layout = world.kernel.space, world.offsets, world.kernel.layout
    tss = world.lookup("cpu_tss_rw")
    assert tss is not None
    ist, sp0 = o.offsetof("tss_struct", "x86_tss.ist"), o.offsetof("tss_struct", "x86_tss.sp0")
    for cpu in range(layout.nr_cpu_ids):
        base = tss + layout.per_cpu_offset(cpu)
        regions = {r.name: r for r in world.unwinder.stacks.regions if r.cpu == cpu}
        for i, name in enumerate(("#DF", "NMI", "#DB", "#MC", "#VC")):
            assert regions[name].hi == mem.u64(base + ist + 8 * i), name
        assert regions["entry"].hi == mem.u64(base + sp0)
        assert regions["IRQ"].hi - regions["IRQ"].lo == world.unwinder.thread_size
    task = next(t for t in world.cpus if world.unwind(t)[0].stack_name == "IRQ")
    frames = world.unwind(task)
    irq = world.unwinder.stacks.find(frames[0].sp)
    back = next(f for f in frames if f.stack_name == "task")
    assert irq is not None and mem.u64(irq.hi - 8) < back.sp <= mem.u64(irq.hi - 8) + 0x40


def test_a_cpu_stopped_in_a_retpoline_thunk_unwinds_to_its_caller() -> None:
    """objtool marks the retpoline thunks as the end of the stack (UNWIND_HINT_EMPTY), but a
    CPU stopped at one (a QEMU dump taken while panic() spins) was called there: registers
    at __x86_indirect_thunk_array with the stack top a real return address of task 1's
    stack unwind to that address and on exactly as the task's own walk does from there."""
    w = kaslr_world()
    task, good = sleeping(w, 1)
    thunk = w.lookup("__x86_indirect_thunk_array")
    assert thunk is not None
    k = 2
    slot = good[k].slot
    assert slot is not None
    regs = {"rip": thunk, "rsp": slot, "rbp": good[k].regs.get("rbp", 0), "cs": 0x10, "ss": 0x18}
    frames = w.unwinder.unwind_regs(regs, task)
    assert frames[0].pc == thunk
    assert [f.pc for f in frames[1:]] == [f.pc for f in good[k:]], (frames, good)
