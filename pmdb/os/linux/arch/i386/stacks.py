"""Where the i386 kernel's stacks are, and the frame a switched-out task left.

A task's kernel stack is THREAD_SIZE (8 KB on i386) at ``task->stack``; each
CPU has a hard-IRQ and a soft-IRQ stack of the same size (per-CPU
``hardirq_stack_ptr`` / ``softirq_stack_ptr``, each a ``struct irq_stack *``
pointing at the stack's lowest address). A CPU's registers with no task to
go by are on the THREAD_SIZE-aligned block around their esp.

``__switch_to_asm`` (arch/x86/entry/entry_32.S) pushes ebp, ebx, edi, esi and,
since 5.0, eflags, so ``task->thread.sp`` points at ``struct
inactive_task_frame`` (flags si di bx bp ret_addr; no flags before 5.0).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout, init_stack_size
from pmdb.os.linux.stacks.regions import StackRegion

THREAD_SIZE = 8192
INACTIVE_FRAME = ("eflags", "esi", "edi", "ebx", "ebp", "eip")
INACTIVE_FRAME_OLD = INACTIVE_FRAME[1:]          # before 5.0: no pushfl

Lookup = Callable[[str], "int | None"]


def thread_size(lookup: Lookup) -> int:
    """THREAD_SIZE (pmdb.os.linux.arch.init_stack_size) with this CPU's usual size."""
    return init_stack_size(lookup, THREAD_SIZE)


def irq_stacks(mem: AddressSpace, lookup: Lookup, layout: KernelLayout, size: int) -> list[StackRegion]:
    """Every CPU's hard- and soft-IRQ stacks that the dump lets us find."""
    out: list[StackRegion] = []
    for var_name, name in (("hardirq_stack_ptr", "IRQ"), ("softirq_stack_ptr", "softirq")):
        var = lookup(var_name)
        if var is None:
            continue
        for cpu in range(layout.nr_cpu_ids):
            try:
                lo = mem.ptr(layout.per_cpu_address(var, cpu))
            except (FaultError, SymbolError):
                continue
            if lo and lo % 16 == 0:
                out.append(StackRegion(name, lo, lo + size, cpu))
    return out


def around(sp: int, size: int) -> StackRegion:
    """The THREAD_SIZE-aligned block holding sp: a CPU's stack when no task names it."""
    lo = sp & ~(size - 1)
    return StackRegion("task", lo, lo + size)


def task_stack(mem: AddressSpace, task: int, stack_off: int, size: int, page_offset: int) -> StackRegion:
    """``task->stack`` .. + THREAD_SIZE; CorruptionError when ``task`` cannot be a task."""
    try:
        base = mem.ptr(task + stack_off)
    except FaultError as err:
        raise CorruptionError(task, f"not a task: cannot read its stack pointer ({err})") from None
    if base == 0 or base % 4096 or base < page_offset:
        raise CorruptionError(task, f"not a task: task->stack {base:#x} is not a kernel stack")
    return StackRegion("task", base, base + size)


def inactive_frame(mem: AddressSpace, task: int, thread_sp_off: int, stack: StackRegion,
                   is_text: Callable[[int], bool]) -> dict[str, int]:
    """A switched-out task's registers from the frame at ``thread.sp``: ebp, eip (the
    return into __schedule) and esp just above the frame; the frame's length is told
    by which slot holds a kernel text address."""
    try:
        sp = mem.ptr(task + thread_sp_off)
    except FaultError as err:
        raise CorruptionError(task, f"not a task: cannot read thread.sp ({err})") from None
    for names in (INACTIVE_FRAME, INACTIVE_FRAME_OLD):
        size = 4 * len(names)
        if not stack.contains(sp, size):
            raise CorruptionError(task, f"thread.sp {sp:#x} is outside its stack {stack.lo:#x}-{stack.hi:#x}")
        try:
            words = struct.unpack(f"<{len(names)}I", mem.read(sp, size))
        except PmdbError as err:
            raise CorruptionError(task, f"the saved frame at thread.sp is unreadable ({err})") from None
        if is_text(words[-1]):
            regs = dict(zip(names, words, strict=True))
            regs["esp"] = sp + size
            return regs
    raise CorruptionError(task, f"no return address in the frame at thread.sp {sp:#x}")
