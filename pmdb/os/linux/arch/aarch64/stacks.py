"""Where the arm64 kernel's stacks are, and where a switched-out task's unwinding starts.

A backtrace may cross a task's own stack (``task->stack``, THREAD_SIZE),
its CPU's IRQ stack (per-CPU ``irq_stack_ptr``, IRQ_STACK_SIZE = THREAD_SIZE),
the overflow stack (per-CPU ``overflow_stack``, 4 KB) and the SDEI stacks
(per-CPU ``sdei_stack_normal_ptr``/``sdei_stack_critical_ptr``). A task that
was switched out starts from ``task->thread.cpu_context`` (x19..x28, fp, sp,
pc: what ``cpu_switch_to`` saved; pc returns into ``__switch_to``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout, init_stack_size
from pmdb.os.linux.stacks.regions import StackRegion
from pmdb.symbols.kmodules import StructOffsets

THREAD_SIZE = 16384
OVERFLOW_STACK_SIZE = 4096
CPU_CONTEXT = ("x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "fp", "sp", "pc")

Lookup = Callable[[str], "int | None"]


def thread_size(lookup: Lookup) -> int:
    """THREAD_SIZE (pmdb.os.linux.arch.init_stack_size) with this CPU's usual size."""
    return init_stack_size(lookup, THREAD_SIZE)


def _per_cpu(mem: AddressSpace, layout: KernelLayout, var: int, cpu: int, deref: bool) -> int | None:
    try:
        addr = layout.per_cpu_address(var, cpu)
        return mem.ptr(addr) if deref else addr & ((1 << 64) - 1)
    except (FaultError, SymbolError):
        return None


def cpu_stacks(mem: AddressSpace, lookup: Lookup, layout: KernelLayout, size: int) -> list[StackRegion]:
    """Every CPU's IRQ, overflow and SDEI stacks that the dump lets us find."""
    kinds = (("irq_stack_ptr", "IRQ", size, True), ("overflow_stack", "overflow", OVERFLOW_STACK_SIZE, False),
             ("sdei_stack_normal_ptr", "SDEI", size, True), ("sdei_stack_critical_ptr", "SDEI-crit", size, True))
    out: list[StackRegion] = []
    for cpu in range(layout.nr_cpu_ids):
        for var_name, name, length, deref in kinds:
            var = lookup(var_name)
            base = _per_cpu(mem, layout, var, cpu, deref) if var is not None else None
            if base:
                out.append(StackRegion(name, base, base + length, cpu))
    return out


@dataclass(frozen=True)
class TaskOffsets:
    """Where task_struct keeps its stack base and its saved cpu_context."""

    stack: int
    cpu_context: int

    @classmethod
    def from_types(cls, offsets: StructOffsets) -> TaskOffsets:
        return cls(offsets.offsetof("task_struct", "stack"),
                   offsets.offsetof("task_struct", "thread") + offsets.offsetof("thread_struct", "cpu_context"))


def task_stack(mem: AddressSpace, task: int, offs: TaskOffsets, size: int) -> StackRegion:
    """``task->stack`` .. + THREAD_SIZE; CorruptionError when ``task`` cannot be a task."""
    try:
        base = mem.ptr(task + offs.stack)
    except FaultError as err:
        raise CorruptionError(task, f"not a task: cannot read its stack pointer ({err})") from None
    if base == 0 or base % 4096 or base < 1 << 63:
        raise CorruptionError(task, f"not a task: task->stack {base:#x} is not a kernel stack")
    return StackRegion("task", base, base + size)


def saved_context(mem: AddressSpace, task: int, offs: TaskOffsets) -> dict[str, int]:
    """A switched-out task's cpu_context as registers (x29 for fp, and lr = pc)."""
    try:
        words = struct.unpack(f"<{len(CPU_CONTEXT)}Q", mem.read(task + offs.cpu_context, 8 * len(CPU_CONTEXT)))
    except PmdbError as err:
        raise CorruptionError(task, f"not a task: its cpu_context is unreadable ({err})") from None
    regs = dict(zip(CPU_CONTEXT, words, strict=True))
    regs["x29"] = regs.pop("fp")
    regs["x30"] = regs["pc"]
    return regs
