"""LinuxKernel: the OS model of a crashed Linux kernel, from nothing but its dump.

Threads are the kernel's tasks (pid, task_struct address, comm); a task that
was on a CPU has that CPU's registers from the dump's notes, a sleeping one
the registers its last context switch saved. Everything is read on first use
and kept, so opening a dump costs only what the first command needs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from pmdb.arch import Arch
from pmdb.dumps.base import Dump
from pmdb.errors import CommandError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux import sysinfo
from pmdb.os.linux.mm.kernel_memory import KernelMemory
from pmdb.os.linux.printk.panicmsg import log_texts
from pmdb.os.linux.printk.ring import kernel_log
from pmdb.os.linux.stacks.frames import Unwinder, unwind_kernel_task
from pmdb.os.linux.tasks.cpus import Cpu, read_cpus
from pmdb.os.linux.tasks.registers import TaskThread
from pmdb.os.linux.tasks.tasks import (
    Task,
    TaskLayout,
    TaskReader,
    collect_tasks,
    count_tasks,
    group_leaders,
    thread_group,
)
from pmdb.symbols.kmodules import KernelModule, RegistryOffsets
from pmdb.threads import Mapping, Thread
from pmdb.types.registry import TypeRegistry
from pmdb.unwind.frame import Frame

NO_UNWINDER = "not a task: its kernel stack is unknown"


class LinuxKernel:
    """pmdb.target.OSModel for a Linux vmcore."""

    name = "linux"
    status_style = "crash"        # ::status right-aligns its keys, as crash's sys does

    def __init__(self, dump: Dump, km: KernelMemory, types: TypeRegistry, *, path: str) -> None:
        self.dump = dump
        self.km = km
        self.mem = km.space
        self.types = types
        self.path = path
        self.arch: Arch = dump.arch
        self.offsets = RegistryOffsets(types)
        self.problems: list[str] = []       # damage found while listing tasks, one line each
        self._layout: TaskLayout | None = None
        self._reader: TaskReader | None = None
        self._tasks: list[Task] | None = None
        self._by_address: dict[int, Task] | None = None      # task(): the list by task_struct
        self._threads: list[Thread] | None = None
        self._lone: dict[int, Thread] = {}   # threads made before the list (the panic task's)
        self._stack_bases: dict[int, int] | None = None
        self._context_spaces: dict[int, AddressSpace | None] = {}   # task -> its user space
        self._cpus: list[Cpu] | None = None
        self._log: list[str] | None = None
        self._unwinder: Unwinder | None = None

    # -- lookups -----------------------------------------------------------------------

    def lookup(self, name: str) -> int | None:
        sym = self.km.symbols.lookup(name)
        return sym.addr if sym is not None and sym.module is None else None

    def vars(self) -> sysinfo.KernelVars:
        info = self.km.info
        sym = self.km.symbols.lookup("node_data")
        slots = info.lengths.get("node_data") or (sym.size // self.mem.ptr_size if sym is not None and sym.size else 64)
        return sysinfo.KernelVars(self.mem, self.lookup, self.offsets, self.types, node_slots=slots)

    @property
    def reader(self) -> TaskReader:
        if self._reader is None:
            if self.types.find("struct task_struct") is None:
                raise SymbolError("no struct task_struct in the kernel's BTF: tasks are unknown")
            self._layout = TaskLayout.from_types(self.offsets)
            self._reader = TaskReader(self.mem, self._layout)
        return self._reader

    # -- CPUs and tasks ---------------------------------------------------------------

    def cpus(self) -> list[Cpu]:
        if self._cpus is None:
            self._cpus = read_cpus(self.mem, self.km.layout, self.lookup, self.offsets,
                                   self.dump.notes, self.arch)
        return self._cpus

    def tasks(self) -> list[Task]:
        """Every task, crash's ps order; damage is noted in ``problems``, not raised."""
        if self._tasks is None:
            init_task = self.lookup("init_task")
            if init_task is None:
                raise SymbolError("no init_task in kallsyms: the task list is unknown")
            active = {c.curr for c in self.cpus() if c.curr}
            self._tasks = collect_tasks(self.reader, init_task, self._idle_tasks(init_task), active,
                                        self.problems)
        return self._tasks

    def _idle_tasks(self, init_task: int) -> list[int]:
        """Each CPU's idle task, init_task (CPU 0's) first when no CPU names it."""
        idle = [c.idle for c in self.cpus() if c.idle]
        return idle if init_task in idle else [init_task, *idle]

    def task_count(self) -> int:
        """How many tasks there are (crash's TASKS), without reading every task where the
        thread groups' own counts can be trusted (tasks.count_tasks); else the list's length.
        The same answer before and after the tasks are read."""
        init_task = self.lookup("init_task")
        if init_task is not None:
            counted = count_tasks(self.reader.mem, init_task, self._idle_tasks(init_task), self.reader.layout)
            if counted is not None:
                return counted
        return len(self.tasks())

    def task(self, addr: int) -> Task:
        """The listed task at a task_struct address, else that task_struct read alone."""
        tasks = self.tasks()
        if self._by_address is None:
            self._by_address = {}
            for t in reversed(tasks):       # the first of two at one address wins, as a scan would
                self._by_address[t.address] = t
        found = self._by_address.get(addr)
        return found if found is not None else self.reader.read(addr)

    def find_task(self, ident: int) -> Task:
        """A task by task_struct address, else by pid (the first with that pid)."""
        tasks = self.tasks()
        for t in tasks:
            if t.address == ident:
                return t
        for t in tasks:
            if t.pid == ident:
                return t
        raise CommandError(f"no task with address or pid {ident:#x} ({ident})")

    def threads_of(self, addr: int) -> list[int]:
        """The task_structs of the thread group that ``addr`` belongs to, leader first."""
        task = self.task(addr)
        leader = task.leader or addr
        if task.idle:
            return [addr]
        return thread_group(self.mem, leader, self.reader.layout)

    def thread_addresses(self, start: int | None) -> list[int]:
        """What the ``thread`` walker yields on a kernel: every task, or the thread group of
        the task (address or pid) given as the start."""
        if start is None:
            return [t.address for t in self.tasks()]
        return self.threads_of(self.find_task(start).address)

    def leaders(self) -> list[int]:
        init_task = self.lookup("init_task")
        if init_task is None:
            raise SymbolError("no init_task in kallsyms: the task list is unknown")
        return group_leaders(self.mem, init_task, self.reader.layout, self.problems)

    def total_pages(self) -> int:
        """The page count %MEM is relative to (crash: present pages of every node)."""
        return sysinfo.present_pages(self.vars())

    def user_space(self, task: Task) -> AddressSpace | None:
        """The task's user address space, through its mm's page tables (None for kernel threads)."""
        if not task.mm:
            return None
        pgd = self.mem.ptr(task.mm + self.offsets.offsetof("mm_struct", "pgd"))
        return self.km.arch.with_root(self.mem, self._phys(pgd))

    def context_space(self, thread: Thread) -> AddressSpace | None:
        """The user space of a thread's task (Target.memory_for reads user addresses there);
        None for a kernel thread or a thread with no task_struct. Kept per task, so its page
        cache lives as long as the dump."""
        if thread.address is None:
            return None
        kept = self._context_spaces
        if thread.address not in kept:
            kept[thread.address] = self.user_space(self.task(thread.address))
        return kept[thread.address]

    def page_table_of(self, task: int) -> int:
        """The physical address of the top-level page table a task runs on: its mm's, or for a
        kernel thread the mm it borrowed (``active_mm``)."""
        mm = self.mem.ptr(task + self.offsets.offsetof("task_struct", "mm"))
        if mm == 0:
            mm = self.mem.ptr(task + self.offsets.offsetof("task_struct", "active_mm"))
        return self._phys(self.mem.ptr(mm + self.offsets.offsetof("mm_struct", "pgd")))

    def _phys(self, addr: int) -> int:
        return self.mem.mapping(addr, 1)[0].offset

    def arguments(self, task: Task, limit: int = 4096) -> str | None:
        """The task's command line from its own memory (mm->arg_start..arg_end), or None when
        the dump left those user pages out."""
        space = self.user_space(task)
        if space is None:
            return None
        try:
            start = self.mem.ptr(task.mm + self.offsets.offsetof("mm_struct", "arg_start"))
            end = self.mem.ptr(task.mm + self.offsets.offsetof("mm_struct", "arg_end"))
            if not 0 < end - start <= limit:
                return None
            raw = space.read(start, end - start)
        except PmdbError:
            return None
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")

    def panic_task(self) -> Task | None:
        """The task running on the CPU that called panic(). Its entry in the task list once
        that is read; before, its task_struct alone, so ::status and the open need not walk
        10,000 tasks (pid, comm, cpu and state are the same bytes either way)."""
        cpu = sysinfo.panic_cpu(self.vars())
        cpus = self.cpus()
        if cpu is None or cpu >= len(cpus) or not cpus[cpu].curr:
            return None
        addr = cpus[cpu].curr or 0
        return self.task(addr) if self._tasks is not None else self._lone_task(addr)

    def _lone_task(self, addr: int) -> Task:
        """One task as the list would hold it (idle and on-CPU marks; no memory figures),
        read by itself; the list's errors when there can be no list (no init_task, no BTF)."""
        init_task = self.lookup("init_task")
        if init_task is None:
            raise SymbolError("no init_task in kallsyms: the task list is unknown")
        task = self.reader.read(addr)
        cpus = self.cpus()
        task.idle = addr == init_task or any(c.idle == addr for c in cpus)
        if task.idle:
            task.ppid = 0    # as collect_tasks shows an idle task
        task.active = any(c.curr == addr for c in cpus)
        return task

    def panic_thread(self) -> Thread | None:
        """The thread crash's default context is: the panic task's, else (no task list) the
        CPU thread whose stack runs through panic(). Made from the panic task alone and kept,
        so the thread list, when it is read, holds this same object."""
        task = self.panic_task()
        if task is None:
            return self.panic_cpu_thread()
        if self._threads is not None:
            return next((t for t in self._threads if t.address == task.address), None)
        thread = self._lone.get(task.address)
        if thread is None:
            on_cpu = {c.curr: c for c in self.cpus() if c.curr}
            thread = self._lone[task.address] = self._thread(0, task, on_cpu.get(task.address))
        return thread

    def panic_cpu_thread(self) -> Thread | None:
        """With no task list: the CPU thread whose stack runs through panic() (the dump
        names no panic_cpu when kallsyms has no data symbols)."""
        sym = self.km.symbols.lookup("panic")
        if sym is None or not sym.size or self.lookup("init_task") is not None:
            return None
        for thread in self.threads():
            if thread.address is None and any(sym.addr <= f.pc - 1 < sym.addr + sym.size
                                               for f in self.stack(thread)):
                return thread
        return None

    def log(self) -> list[str]:
        if self._log is None:
            self._log = log_texts(lambda: kernel_log(self.km))
        return self._log

    # -- OSModel ------------------------------------------------------------------------

    def threads(self) -> Sequence[Thread]:
        if self._threads is None:
            try:
                tasks = self.tasks()
            except PmdbError as err:
                self.problems.append(str(err))
                tasks = []
            on_cpu = {c.curr: c for c in self.cpus() if c.curr}
            self._threads = [self._listed(i, t, on_cpu.get(t.address)) for i, t in enumerate(tasks, 1)]
            if not tasks:
                self._threads = self._cpu_threads()
        return self._threads

    def _cpu_threads(self) -> list[Thread]:
        """With no task list (no init_task symbol, no types), each CPU the dump's notes
        describe is a thread of its own, so its stack can still be unwound."""
        return [Thread(id=c.index, registers=dict(c.registers), name=f"cpu{c.index}", index=i,
                       extra={"cpu": c.index})
                for i, c in enumerate((c for c in self.cpus() if c.registers), 1)]

    def _listed(self, index: int, task: Task, cpu: Cpu | None) -> Thread:
        """A task's thread in the list: the one panic_thread made before, numbered now."""
        lone = self._lone.get(task.address)
        if lone is None:
            return self._thread(index, task, cpu)
        lone.index = index
        return lone

    def _thread(self, index: int, task: Task, cpu: Cpu | None) -> Thread:
        regs = dict(cpu.registers) if cpu is not None and cpu.registers else {}
        extra: dict[str, object] = {"cpu": task.cpu, "state": task.state, "ppid": task.ppid}
        if not regs and cpu is None:      # read from its stack when asked: not for ::ps
            return TaskThread(functools.partial(self._saved_registers, task.address), id=task.pid,
                              name=task.comm, index=index, address=task.address, extra=extra)
        return Thread(id=task.pid, registers=regs, name=task.comm, index=index, address=task.address,
                      extra=extra)

    def _saved_registers(self, task: int) -> dict[str, int]:
        """A switched-out task's registers: by the CPU's kernel parts when they read them
        (arm64: ``thread.cpu_context``), else x86-64's frame at ``thread.sp``."""
        saved = getattr(self.km.arch, "saved_registers", None)
        if saved is None:
            return self.reader.saved_registers(task)
        regs: dict[str, int] = saved(self.mem, task, self.offsets)
        return regs

    def _stack_base(self, task: int) -> int | None:
        """task->stack as the task list read it (None before the list is read): the unwinder
        then reads one page less for each of 10,000 tasks."""
        if self._tasks is None:
            return None
        if self._stack_bases is None:
            self._stack_bases = {t.address: t.stack for t in self._tasks if t.stack}
        return self._stack_bases.get(task)

    @property
    def unwinder(self) -> Unwinder:
        """The CPU's kernel unwinder (x86-64: ORC), built on first use."""
        if self._unwinder is None:
            self._unwinder = self.km.arch.unwinder(self.mem, self.lookup, self.km.layout, self.offsets,
                                                   self.km.modules, self.km.info.osrelease,
                                                   self.km.symbols.describe)
        return self._unwinder

    def stack(self, thread: Thread) -> list[Frame]:
        """The task's kernel stack: from its CPU's registers when it was running, else from
        the frame its last context switch left; frame 0 alone (with the reason) when the
        stack cannot be unwound."""
        if thread.address is not None:    # the unwinder finds a sleeping task's frame itself
            on_cpu = {c.curr: c.registers for c in self.cpus() if c.curr and c.registers}
            try:
                return unwind_kernel_task(self.unwinder, thread.address, on_cpu.get(thread.address),
                                          self._stack_base(thread.address))
            except PmdbError as err:
                note = str(err)
        regs = thread.registers
        if thread.address is None:
            note = NO_UNWINDER
            if regs.get(self.arch.pc):        # a CPU with no task: unwind from its registers
                try:
                    return self.unwinder.unwind_regs(regs)
                except PmdbError as err:
                    note = str(err)
        pc = regs.get(self.arch.pc)
        if pc is None:
            return []
        return [Frame(level=0, pc=pc, sp=regs.get(self.arch.sp, 0), regs=dict(regs), method="regs",
                      note=note)]

    def status(self) -> list[tuple[str, str]]:
        return sysinfo.kernel_status(self)

    def mappings(self) -> Sequence[Mapping]:
        return []

    def describe_address(self, target: Any, addr: int) -> list[str] | None:
        """::whatis of a kernel address: the slab object holding it (when one does), then
        the region it lies in (symbol, module, task stack, direct map, vmalloc, per-CPU)."""
        from pmdb.os.linux.mm.addresses import describe_kernel_address
        from pmdb.os.linux.slab.text import describe_slab_address

        lines = (describe_slab_address(target, addr) or []) + (describe_kernel_address(target, addr) or [])
        return lines or None

    def close(self) -> None:
        self.dump.close()

    def describe_file(self) -> str:
        return os.path.basename(self.path)

    def __repr__(self) -> str:
        return f"LinuxKernel({self.path!r})"

    # -- typed accessors for dcmds ---------------------------------------------------------

    def page_size(self) -> int:
        """The kernel's page size in bytes (VMCOREINFO's PAGESIZE; 4096 when it is absent)."""
        return int(self.km.info.raw.get("PAGESIZE", "4096"))

    def modules(self) -> list[KernelModule]:
        """The loaded modules (pmdb.symbols.kmodules), in the kernel's list order."""
        return list(self.km.modules)

    def unwind_task(self, task: int) -> list[Frame]:
        """The kernel stack of the task_struct at ``task`` from the frame it left, for a task
        in no task list (lost to a damaged list); CorruptionError when it is not a task."""
        return unwind_kernel_task(self.unwinder, task, None)
