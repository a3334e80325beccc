"""The kernel's tasks from its own lists: every process and thread, and the idle tasks.

What crash's ``ps`` shows for each task (pid, parent, cpu, state, memory,
command) is read here from ``struct task_struct`` with offsets taken from
the kernel's BTF, so one reader serves every kernel whose member names it
knows. Walks never trust the lists: they are bounded and cycle-checked, and
a damaged list costs the tasks behind the damage, not the whole listing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kmodules import StructOffsets

MAX_TASKS = 1 << 20          # far above any real pid_max; ends a walk through garbage

# task_struct.__state bits as of Linux 5.14-6.x (include/linux/sched.h); exit_state
# shares the numbering (EXIT_DEAD 0x10, EXIT_ZOMBIE 0x20). 5.10's ``state`` has the
# same values for all of these (checked against its /proc in the kernel lab).
TASK_INTERRUPTIBLE = 0x1
TASK_UNINTERRUPTIBLE = 0x2
TASK_STOPPED = 0x4
TASK_TRACED = 0x8
EXIT_DEAD = 0x10
EXIT_ZOMBIE = 0x20
TASK_PARKED = 0x40
TASK_DEAD = 0x80
TASK_WAKEKILL = 0x100
TASK_WAKING = 0x200
TASK_NOLOAD = 0x400
TASK_NEW = 0x800
PF_KTHREAD = 0x00200000

# crash's two-letter states, tested in crash's order; the first match wins
_STATE_LETTERS = ((TASK_INTERRUPTIBLE, "IN"), (TASK_UNINTERRUPTIBLE, "UN"), (EXIT_ZOMBIE, "ZO"),
                  (TASK_STOPPED, "ST"), (TASK_TRACED, "TR"), (EXIT_DEAD, "DE"), (TASK_DEAD, "DE"),
                  (TASK_PARKED, "PA"), (TASK_WAKING, "WA"), (TASK_NEW, "NE"), (TASK_WAKEKILL, "WK"))

# mm_struct rss counters (enum since 4.5): MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES;
# resident memory is file + anon + shmem, as /proc/PID/status's VmRSS counts it
_RSS_COUNTERS = (0, 1, 3)


def state_letters(state: int, exit_state: int) -> str:
    """crash's ST column for ``__state | exit_state``."""
    s = state | exit_state
    if s == 0:
        return "RU"
    if s & TASK_UNINTERRUPTIBLE and s & TASK_NOLOAD:
        return "ID"        # TASK_IDLE: a kernel thread waiting without adding to the load
    for bit, letters in _STATE_LETTERS:
        if s & bit:
            return letters
    return "??"


@dataclass
class Task:
    """One task as ps shows it; memory figures are in pages."""

    address: int
    pid: int
    tgid: int
    ppid: int
    cpu: int
    state: str
    comm: str
    flags: int
    mm: int
    leader: int = 0
    idle: bool = False
    active: bool = False
    total_vm: int = 0
    rss: int = 0
    own_rss: int = 0                 # SPLIT_RSS_COUNTING: pages not yet folded into the mm
    parent: int = 0
    stack: int = 0                   # task_struct.stack: the base of its kernel stack

    @property
    def kthread(self) -> bool:
        """A kernel thread (crash brackets its name): the idle tasks, PF_KTHREAD, else
        no mm of its own; a zombie has dropped its mm without becoming one."""
        if self.pid == 0 or self.flags & PF_KTHREAD:
            return True
        return self.mm == 0 and self.state not in ("ZO", "DE")


def _first(offsets: StructOffsets, struct_name: str, *paths: str) -> tuple[int, str] | None:
    """The offset of the first member path this kernel has, and which one it was."""
    for path in paths:
        try:
            return offsets.offsetof(struct_name, path), path
        except SymbolError:
            continue
    return None


def _need(offsets: StructOffsets, struct_name: str, *paths: str) -> int:
    hit = _first(offsets, struct_name, *paths)
    if hit is None:
        raise SymbolError(f"struct {struct_name} has none of {', '.join(paths)} in this kernel's BTF")
    return hit[0]


@dataclass
class TaskLayout:
    """Where the members pmdb reads sit in task_struct, mm_struct and signal_struct."""

    pid: int
    tgid: int
    comm: int
    state: int
    state_size: int
    exit_state: int
    flags: int
    mm: int
    real_parent: int
    parent: int
    group_leader: int
    tasks: int
    cpu: int | None
    thread_node: int | None          # with signal.thread_head (3.14+)
    signal: int | None
    thread_head: int | None
    thread_group: int | None         # the older per-leader list (removed in 6.7)
    nr_threads: int | None           # signal_struct.nr_threads: the threads of a group
    task_rss: int | None             # task_struct.rss_stat.count (SPLIT_RSS_COUNTING, up to 6.1)
    mm_total_vm: int
    mm_rss: int | None               # mm_struct.rss_stat.count: atomic_long_t[] up to 6.1
    span: int = 0
    thread_sp: int | None = None
    stack: int | None = None         # task_struct.stack (::whatis's stack index)
    extra: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_types(cls, o: StructOffsets) -> TaskLayout:
        t = "task_struct"
        # 5.14 renamed state to __state (and made it unsigned int from long)
        state = _first(o, t, "__state", "state")
        if state is None:
            raise SymbolError("struct task_struct has no __state or state member in this kernel's BTF")
        # cpu: thread_info.cpu (x86 up to 4.8, and again since 5.16), task_struct.cpu (4.9-5.15)
        cpu = _first(o, t, "thread_info.cpu", "cpu")
        thread_node = _first(o, t, "thread_node")
        layout = cls(
            pid=_need(o, t, "pid"), tgid=_need(o, t, "tgid"), comm=_need(o, t, "comm"),
            state=state[0], state_size=4 if state[1] == "__state" else 8,
            exit_state=_need(o, t, "exit_state"), flags=_need(o, t, "flags"), mm=_need(o, t, "mm"),
            real_parent=_need(o, t, "real_parent"), parent=_need(o, t, "parent"),
            group_leader=_need(o, t, "group_leader"), tasks=_need(o, t, "tasks"),
            cpu=cpu[0] if cpu else None,
            thread_node=thread_node[0] if thread_node else None,
            signal=_opt(o, t, "signal"), thread_head=_opt(o, "signal_struct", "thread_head"),
            thread_group=_opt(o, t, "thread_group"), nr_threads=_opt(o, "signal_struct", "nr_threads"),
            task_rss=_opt(o, t, "rss_stat.count"),
            mm_total_vm=_need(o, "mm_struct", "total_vm"),
            # 6.2 turned mm->rss_stat into percpu_counter[]: its .count is the folded part
            mm_rss=_opt(o, "mm_struct", "rss_stat.count"),
            thread_sp=_thread_sp(o), stack=_opt(o, t, "stack"))
        layout.span = max(layout.comm + 16, layout.tasks + 16, layout.state + 8, layout.mm + 8,
                          layout.real_parent + 8, layout.parent + 8, layout.group_leader + 8,
                          (layout.cpu or 0) + 4, (layout.signal or 0) + 8, (layout.task_rss or 0) + 16,
                          (layout.thread_node or 0) + 8, (layout.stack or 0) + 8)
        return layout


def _opt(o: StructOffsets, struct_name: str, path: str) -> int | None:
    hit = _first(o, struct_name, path)
    return hit[0] if hit else None


def _thread_sp(o: StructOffsets) -> int | None:
    try:
        return o.offsetof("task_struct", "thread") + o.offsetof("thread_struct", "sp")
    except SymbolError:
        return None


class TaskReader:
    """Reads Tasks from memory; ``parent_pid`` results are cached per parent address."""

    def __init__(self, mem: AddressSpace, layout: TaskLayout) -> None:
        self.mem = mem
        self.layout = layout
        self._pids: dict[int, int] = {}

    def read(self, addr: int) -> Task:
        """One task_struct, read in one piece; FaultError when it is not in the dump."""
        return self.parse(addr, self.mem.read(addr, self.layout.span))

    def pointer_in(self, raw: bytes, off: int) -> int:
        """A pointer member of a task_struct read in one piece."""
        return int.from_bytes(raw[off:off + self.mem.ptr_size], "little")

    def parse(self, addr: int, raw: bytes) -> Task:
        """A Task from the task_struct's bytes (``layout.span`` of them) read at addr."""
        L = self.layout

        def i32(off: int) -> int:
            return int(struct.unpack_from("<i", raw, off)[0])

        word = "<Q" if self.mem.ptr_size == 8 else "<I"     # pointers: 4 bytes on 32-bit kernels

        def ptr(off: int) -> int:
            return int(struct.unpack_from(word, raw, off)[0])

        state = int.from_bytes(raw[L.state:L.state + L.state_size], "little")
        comm = raw[L.comm:L.comm + 16].split(b"\0", 1)[0].decode("utf-8", "replace")
        parent = ptr(L.real_parent)
        task = Task(address=addr, pid=i32(L.pid), tgid=i32(L.tgid), ppid=self.parent_pid(parent),
                    cpu=i32(L.cpu) if L.cpu is not None else 0,
                    state=state_letters(state, i32(L.exit_state)), comm=comm,
                    flags=i32(L.flags) & 0xFFFFFFFF, mm=ptr(L.mm), leader=ptr(L.group_leader),
                    parent=parent)
        if L.stack is not None:
            task.stack = ptr(L.stack)
        if L.task_rss is not None:
            task.own_rss = sum(i32(L.task_rss + 4 * i) for i in _RSS_COUNTERS)
        return task

    def parent_pid(self, parent: int) -> int:
        hit = self._pids.get(parent)
        if hit is None:
            try:
                hit = self.mem.read_int(parent + self.layout.pid, 4, signed=True) if parent else 0
            except FaultError:
                hit = 0
            self._pids[parent] = hit
        return hit

    def mm_counters(self, mm: int) -> tuple[int, int]:
        """(total_vm, rss) of an mm, in pages; negative transient counts read as 0."""
        L = self.layout
        w = self.mem.ptr_size                  # total_vm and the counters are longs
        total_vm = self.mem.read_int(mm + L.mm_total_vm, w)
        rss = 0
        if L.mm_rss is not None:
            for i in _RSS_COUNTERS:
                rss += self.mem.read_int(mm + L.mm_rss + w * i, w, signed=True)
        return total_vm, max(rss, 0)

    def saved_registers(self, task: int) -> dict[str, int]:
        """A sleeping task's registers from the frame __switch_to_asm pushed (x86-64, 4.9+):
        struct inactive_task_frame {r15, r14, r13, r12, bx, bp, ret_addr} at thread.sp."""
        if self.layout.thread_sp is None:
            return {}
        # i386 (5.0+): {flags, si, di, bx, bp, ret_addr}
        names = (("r15", "r14", "r13", "r12", "rbx", "rbp", "rip") if self.mem.ptr_size == 8
                 else ("eflags", "esi", "edi", "ebx", "ebp", "eip"))
        size = self.mem.ptr_size * len(names)
        try:
            sp = self.mem.ptr(task + self.layout.thread_sp)
            words = struct.unpack(f"<{len(names)}{'Q' if self.mem.ptr_size == 8 else 'I'}",
                                  self.mem.read(sp, size))
        except (FaultError, struct.error):
            return {}
        regs = dict(zip(names, words, strict=True))
        regs["rsp" if self.mem.ptr_size == 8 else "esp"] = sp + size
        return regs


def walk_ring(mem: AddressSpace, head: int, *, limit: int = MAX_TASKS, what: str = "list") -> Iterator[int]:
    """The nodes of a circular list_head list after ``head``, forward; CorruptionError on a loop
    that misses the head, once the nodes before it have been handed out."""
    seen = {head}
    node = mem.ptr(head)
    while node != head:
        if node in seen:
            raise CorruptionError(node, f"the {what} loops without returning to its head")
        if len(seen) > limit:
            raise CorruptionError(node, f"the {what} has more than {limit} entries")
        if node == 0:
            raise CorruptionError(head, f"the {what} has a NULL next pointer")
        nxt = mem.ptr(node)     # a wild node faults here, before it is handed out
        seen.add(node)
        yield node
        node = nxt


def walk_ring_back(mem: AddressSpace, head: int, stop: set[int], *, limit: int = MAX_TASKS) -> list[int]:
    """From ``head`` backwards through ``prev`` until a node in ``stop``: the tail of a list
    whose forward chain broke. Returned in forward order."""
    out: list[int] = []
    node = mem.ptr(head + mem.ptr_size)
    seen = {head}
    while node not in stop and node not in seen and node and len(out) < limit:
        seen.add(node)
        out.append(node)
        node = mem.ptr(node + mem.ptr_size)
    return out[::-1]


def group_leaders(mem: AddressSpace, init_task: int, layout: TaskLayout,
                  problems: list[str]) -> list[int]:
    """init_task and every task on its ``tasks`` list (thread-group leaders). When the list is
    damaged, the rest is recovered backwards through ``prev`` and the damage noted."""
    head = init_task + layout.tasks
    nodes: list[int] = []
    try:
        nodes.extend(walk_ring(mem, head, what="task list"))
    except (CorruptionError, FaultError) as err:
        problems.append(f"{err}; the tasks after it were found backwards through prev")
        try:
            nodes.extend(walk_ring_back(mem, head, set(nodes)))
        except FaultError:
            pass
    return [init_task] + [n - layout.tasks for n in nodes]


# more threads than a kernel can have (PID_MAX_LIMIT): a group's count that says so is damage
_MAX_THREADS = 4 * 1024 * 1024


def count_tasks(mem: AddressSpace, init_task: int, idle: list[int], layout: TaskLayout) -> int | None:
    """How many tasks collect_tasks finds (given the same idle tasks, init_task among them), from each thread group's own count
    (``signal->nr_threads``, which the kernel changes as it links and unlinks the group's
    threads): a read or two a process, not a read of every task (10,000 threads in 200
    processes: 9 ms against 0.4 s). None when that cannot be trusted: no such member, a
    damaged list of groups, a count that cannot be read or makes no sense. The count is
    the kernel's; a walk that loses threads to missing pages lists fewer, and says so."""
    if layout.signal is None or layout.nr_threads is None:
        return None
    problems: list[str] = []
    leaders = group_leaders(mem, init_task, layout, problems)
    if problems:
        return None
    total = len(set(idle))
    try:
        for leader in leaders[1:]:
            signal = mem.ptr(leader + layout.signal)
            threads = mem.u32(signal + layout.nr_threads) if signal else 1
            if not 0 < threads <= _MAX_THREADS:
                return None
            total += threads
    except PmdbError:
        return None
    return total


def thread_group(mem: AddressSpace, leader: int, layout: TaskLayout) -> list[int]:
    """Every thread of the group led by ``leader``, the leader first."""
    if layout.thread_node is not None and layout.signal is not None and layout.thread_head is not None:
        # 3.14+: signal_struct.thread_head lists every thread through task_struct.thread_node
        signal = mem.ptr(leader + layout.signal)
        if signal == 0:
            return [leader]
        nodes = [n - layout.thread_node for n in walk_ring(mem, signal + layout.thread_head, what="thread list")]
        return [leader] + [t for t in nodes if t != leader]
    if layout.thread_group is not None:
        # before 3.14 (and alongside until 6.7): a ring through each member's thread_group
        ring = walk_ring(mem, leader + layout.thread_group, what="thread group")
        return [leader] + [n - layout.thread_group for n in ring]
    return [leader]


def collect_tasks(reader: TaskReader, init_task: int, idle: list[int], active: set[int],
                  problems: list[str]) -> list[Task]:
    """Every task: the idle task of each CPU, then each thread of each group, sorted by pid
    (crash's order), with memory figures and the active (on-CPU) marks filled in."""
    mem, layout = reader.mem, reader.layout
    tasks: list[Task] = []
    seen: set[int] = set()

    def add(addr: int, is_idle: bool) -> None:
        if addr in seen:
            return
        seen.add(addr)
        try:
            task = reader.read(addr)
        except PmdbError as err:
            problems.append(f"task {addr:#x}: {err}")
            return
        task.idle = is_idle
        if task.idle:
            task.ppid = 0    # fork_idle() leaves real_parent at the forking task; crash shows 0
        task.active = addr in active
        tasks.append(task)

    for addr in idle:
        add(addr, True)
    if layout.thread_node is not None and layout.signal is not None and layout.thread_head is not None:
        for leader in group_leaders(mem, init_task, layout, problems):
            if leader == init_task:
                add(leader, False)
                continue
            for task in _read_group(reader, leader, problems):
                if task.address not in seen:
                    seen.add(task.address)
                    task.active = task.address in active
                    tasks.append(task)
        _fill_memory(reader, tasks, problems)
        tasks.sort(key=lambda t: t.pid)
        return tasks
    # each group's tasks are read right after its thread list is walked, while the pages
    # that walk touched are still in the dump's page cache (10,000 tasks would overflow it)
    for leader in group_leaders(mem, init_task, layout, problems):
        try:
            members = thread_group(mem, leader, layout) if leader != init_task else [leader]
        except (CorruptionError, FaultError) as err:
            problems.append(f"threads of task {leader:#x}: {err}")
            members = [leader]
        for t in members:
            add(t, False)
    _fill_memory(reader, tasks, problems)
    tasks.sort(key=lambda t: t.pid)
    return tasks


def _read_group(reader: TaskReader, leader: int, problems: list[str]) -> list[Task]:
    """The tasks of the group led by ``leader`` (3.14+'s signal->thread_head list), each
    task_struct read once: the next link (thread_node) is inside the bytes read for it.
    Damage costs the threads behind it, with one line in ``problems``."""
    L = reader.layout
    assert L.signal is not None and L.thread_head is not None and L.thread_node is not None
    try:
        raw = reader.mem.read(leader, L.span)
    except FaultError as err:
        problems.append(f"task {leader:#x}: {err}")
        return []
    lead = reader.parse(leader, raw)
    out = [lead]
    signal = reader.pointer_in(raw, L.signal)
    if signal == 0:
        return out
    head = signal + L.thread_head
    seen = {head}
    try:
        node = reader.mem.ptr(head)
        while node != head:
            if node in seen or node == 0 or len(seen) > MAX_TASKS:
                raise CorruptionError(node, "the thread list loops, ends in NULL or never ends")
            seen.add(node)
            addr = node - L.thread_node
            if addr == leader:
                node = reader.pointer_in(raw, L.thread_node)
                continue
            member = reader.mem.read(addr, L.span)
            out.append(reader.parse(addr, member))
            node = reader.pointer_in(member, L.thread_node)
    except (CorruptionError, FaultError) as err:
        problems.append(f"threads of task {leader:#x}: {err}")
    return out


def _fill_memory(reader: TaskReader, tasks: list[Task], problems: list[str]) -> None:
    """VSZ and RSS per mm; with split RSS counting each thread's unfolded pages count too."""
    by_mm: dict[int, list[Task]] = {}
    for t in tasks:
        if t.mm:
            by_mm.setdefault(t.mm, []).append(t)
    for mm, users in by_mm.items():
        try:
            total_vm, rss = reader.mm_counters(mm)
        except FaultError as err:
            problems.append(f"mm {mm:#x} of pid {users[0].pid}: {err}")
            continue
        rss = max(rss + sum(u.own_rss for u in users), 0)
        for u in users:
            u.total_vm, u.rss = total_vm, rss
