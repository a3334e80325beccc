"""Where the x86-64 kernel's stacks are, and where each task's unwinding starts.

A kernel backtrace may cross several stacks: the task's own (``task->stack``,
THREAD_SIZE bytes), its CPU's IRQ stack (per-CPU ``hardirq_stack_ptr``, whose
top word holds the interrupted stack pointer), and the exception (IST) stacks
in the CPU's ``cpu_entry_area`` (per-CPU ``cea_exception_stacks``: #DF, NMI,
#DB, #MC, #VC, #VC2) and its entry stack. The unwinder checks every read
against these bounds, names the stack each frame is on, and refuses to go
down a stack or back to one it left: that is what turns a corrupted stack
into a one-line reason instead of a loop.

A task that was on a CPU starts from that CPU's registers (the dump's
NT_PRSTATUS notes); a task that was switched out starts from the frame that
``__switch_to_asm`` pushed, at ``task->thread.sp`` (``struct
inactive_task_frame``: r15 r14 r13 r12 bx bp ret_addr, 4.9+).
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

THREAD_SIZE = 16384          # x86-64 without KASAN (PAGE_SIZE << 2)
# the frame __switch_to_asm leaves at thread.sp (arch/x86/include/asm/switch_to.h)
INACTIVE_FRAME = ("r15", "r14", "r13", "r12", "rbx", "rbp", "rip")
# cea_exception_stacks members and the names the kernel's stack dumps use for them
_IST_STACKS = (("DF_stack", "#DF"), ("NMI_stack", "NMI"), ("DB_stack", "#DB"),
               ("MCE_stack", "#MC"), ("VC_stack", "#VC"), ("VC2_stack", "#VC2"))

Lookup = Callable[[str], "int | None"]


def thread_size(lookup: Lookup) -> int:
    """THREAD_SIZE (pmdb.os.linux.arch.init_stack_size) with this CPU's usual size."""
    return init_stack_size(lookup, THREAD_SIZE)


def irq_stack(mem: AddressSpace, lookup: Lookup, layout: KernelLayout, cpu: int,
              size: int, offsets: StructOffsets | None = None) -> StackRegion | None:
    """A CPU's hard-IRQ stack. Since 5.13 ``hardirq_stack_ptr`` points at the top word
    (which holds the interrupted stack pointer), before that at the top itself."""
    var = _hardirq_stack_ptr(lookup, offsets)
    if var is None:
        return None
    try:
        ptr = mem.ptr(layout.per_cpu_address(var, cpu))
    except (FaultError, SymbolError):
        return None
    if not ptr:
        return None           # a CPU that never came up
    top = ptr + 8 if ptr % 16 == 8 else ptr
    return StackRegion("IRQ", top - size, top, cpu)


def _hardirq_stack_ptr(lookup: Lookup, offsets: StructOffsets | None) -> int | None:
    """The per-CPU variable holding the IRQ stack pointer: its own (before 6.2, and again
    since pcpu_hot was taken apart in 6.15), or ``pcpu_hot.hardirq_stack_ptr`` (6.2-6.14)."""
    var = lookup("hardirq_stack_ptr")
    if var is not None:
        return var
    hot = lookup("pcpu_hot")
    if hot is None or offsets is None:
        return None
    try:
        return hot + offsets.offsetof("pcpu_hot", "hardirq_stack_ptr")
    except SymbolError:
        return None


def exception_stacks(mem: AddressSpace, lookup: Lookup, layout: KernelLayout,
                     offsets: StructOffsets, cpu: int) -> list[StackRegion]:
    """A CPU's IST stacks and entry stack in its cpu_entry_area; sizes come from BTF."""
    var = lookup("cea_exception_stacks")
    if var is None:
        return []
    try:
        base = mem.ptr(layout.per_cpu_address(var, cpu))
    except (FaultError, SymbolError):
        return []
    if not base:
        return []
    out = []
    for member, name in _IST_STACKS:
        try:
            lo = base + offsets.offsetof("cea_exception_stacks", member)
            size = _ist_size(offsets, member)
        except SymbolError:
            continue            # #VC stacks exist only with AMD SEV (5.10+)
        out.append(StackRegion(name, lo, lo + size, cpu))
    entry = _entry_stack(offsets, base, cpu)
    if entry is not None:
        out.append(entry)
    return out


def _ist_size(offsets: StructOffsets, member: str) -> int:
    """An IST stack's size: up to the guard page that follows it, which is the next
    present stack's guard or the final IST_top_guard."""
    names = [m for m, _ in _IST_STACKS]
    start = offsets.offsetof("cea_exception_stacks", member)
    for nxt in [m + "_guard" for m in names[names.index(member) + 1:]] + ["IST_top_guard"]:
        try:
            return offsets.offsetof("cea_exception_stacks", nxt) - start
        except SymbolError:
            continue
    raise SymbolError(f"cannot size cea_exception_stacks.{member}")


def _entry_stack(offsets: StructOffsets, estacks: int, cpu: int) -> StackRegion | None:
    """The entry (trampoline) stack: same cpu_entry_area as the IST stacks."""
    try:
        area = estacks - offsets.offsetof("cpu_entry_area", "estacks")
        lo = area + offsets.offsetof("cpu_entry_area", "entry_stack_page")
        size = offsets.offsetof("cpu_entry_area", "tss") - offsets.offsetof("cpu_entry_area", "entry_stack_page")
    except SymbolError:
        return None
    return StackRegion("entry", lo, lo + size, cpu) if 0 < size <= 1 << 16 else None


def cpu_stacks(mem: AddressSpace, lookup: Lookup, layout: KernelLayout, offsets: StructOffsets | None,
               size: int) -> list[StackRegion]:
    """Every CPU's IRQ, exception and entry stacks that the dump lets us find."""
    out: list[StackRegion] = []
    for cpu in range(layout.nr_cpu_ids):
        irq = irq_stack(mem, lookup, layout, cpu, size, offsets)
        if irq is not None:
            out.append(irq)
        if offsets is not None:
            out.extend(exception_stacks(mem, lookup, layout, offsets, cpu))
    return out


@dataclass(frozen=True)
class TaskOffsets:
    """Where task_struct keeps its stack base and saved stack pointer."""

    stack: int
    thread_sp: int

    @classmethod
    def from_types(cls, offsets: StructOffsets) -> TaskOffsets:
        return cls(offsets.offsetof("task_struct", "stack"),
                   offsets.offsetof("task_struct", "thread") + offsets.offsetof("thread_struct", "sp"))

    @classmethod
    def from_optional(cls, offsets: StructOffsets | None) -> TaskOffsets | None:
        """None when there are no types, or they lack these members."""
        if offsets is None:
            return None
        try:
            return cls.from_types(offsets)
        except SymbolError:
            return None


def task_stack(mem: AddressSpace, task: int, offs: TaskOffsets, size: int,
               base: int | None = None) -> StackRegion:
    """``task->stack`` .. + THREAD_SIZE; CorruptionError when ``task`` cannot be a task.
    ``base``: task->stack as the task list already read it (one page read less a task)."""
    if base is None:
        try:
            base = mem.ptr(task + offs.stack)
        except FaultError as err:
            raise CorruptionError(task, f"not a task: cannot read its stack pointer ({err})") from None
    if base == 0 or base % 4096 or base < 1 << 63:
        raise CorruptionError(task, f"not a task: task->stack {base:#x} is not a kernel stack")
    return StackRegion("task", base, base + size)


def inactive_frame(mem: AddressSpace, task: int, offs: TaskOffsets, stack: StackRegion,
                   held: Callable[[int, int], bytes | None] | None = None) -> dict[str, int]:
    """A switched-out task's registers from the frame at ``thread.sp``: the callee-saved
    registers, rip (the return into __schedule), and rsp just above the frame. ``held``:
    the stack's bytes at an address when the caller has read them already, else None."""
    try:
        sp = mem.ptr(task + offs.thread_sp)
    except FaultError as err:
        raise CorruptionError(task, f"not a task: cannot read thread.sp ({err})") from None
    size = 8 * len(INACTIVE_FRAME)
    if not stack.contains(sp, size):
        raise CorruptionError(task, f"thread.sp {sp:#x} is outside its stack {stack.lo:#x}-{stack.hi:#x}")
    try:
        raw = held(sp, size) if held is not None else None
        words = struct.unpack(f"<{len(INACTIVE_FRAME)}Q", raw if raw is not None else mem.read(sp, size))
    except PmdbError as err:
        raise CorruptionError(task, f"the saved frame at thread.sp is unreadable ({err})") from None
    regs = dict(zip(INACTIVE_FRAME, words, strict=True))
    regs["rsp"] = sp + size
    return regs
