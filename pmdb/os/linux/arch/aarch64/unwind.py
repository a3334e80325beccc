"""The arm64 kernel unwinder: frame records (the x29 chain) across exception entries and stacks.

It follows the kernel's own ``unwind_next`` (arch/arm64/kernel/stacktrace.c):
a frame record is two words, ``[fp]`` the caller's record and ``[fp+8]`` the
return address (pointer-authenticated: the PAC bits are stripped). An
exception entry (``el1h_64_irq``, ``el0t_64_sync`` ...) builds a ``struct
pt_regs`` whose ``stackframe`` record links the interrupted context in: when
a return address is in an entry vector, the next record is that
``stackframe`` and the pt_regs around it gives the interrupted pc, sp and
registers; one from EL0 ends the walk as the user frame. The task's last
record is ``task_pt_regs(task)->stackframe``. Every record must lie on a known
stack, above the previous one on the same stack, and a walk never goes back
to a stack it left; otherwise the last frame's ``note`` says why it stopped.

Frames follow crash's reading: ``pc`` is a return address read at ``slot``
(the record's lr word) and ``sp`` the record's address.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout
from pmdb.os.linux.arch.aarch64.stacks import TaskOffsets, cpu_stacks, saved_context, task_stack, thread_size
from pmdb.os.linux.stacks.regions import StackMap, StackRegion
from pmdb.symbols.kmodules import StructOffsets
from pmdb.unwind.frame import Frame

MAX_FRAMES = 256
PT_REGS = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")
STACKFRAME_6_1 = 304            # offsetof(struct pt_regs, stackframe) in 5.x-6.x, when BTF is missing
# entry vectors whose handler call's return address marks a pt_regs (5.10: el1_irq; 5.12+: el1h_64_irq)
_ENTRY = re.compile(r"^el[01][ht]?_(?:(?:64|32)_)?(?:sync|irq|fiq|error)(?:_compat|_invalid)?$")
_MASK64 = (1 << 64) - 1

Lookup = Callable[[str], "int | None"]


class _Stop(Exception):
    """The walk cannot go on; the message becomes the last frame's note."""


@dataclass
class _State:
    fp: int
    pc: int
    stack: StackRegion | None
    left: set[str] = field(default_factory=set)


def strip_pac(value: int, mask: int) -> int:
    """A kernel return address without its pointer-authentication code."""
    return value | mask if value >> 55 & 1 else value & ~mask & _MASK64


class Arm64Unwinder:
    """Unwinds arm64 kernel stacks of one dump; build once, use for every task."""

    def __init__(self, mem: AddressSpace, stacks: StackMap, task_offsets: TaskOffsets | None, size: int,
                 pac_mask: int, stackframe: int, name_of: Callable[[int], str],
                 describe: Callable[[int], str] | None = None) -> None:
        self.mem, self.stacks, self.task_offsets, self.thread_size = mem, stacks, task_offsets, size
        self.pac_mask = pac_mask
        self.stackframe = stackframe
        self.name_of = name_of
        self.describe = describe or (lambda a: f"{a:#x}")

    @classmethod
    def build(cls, mem: AddressSpace, lookup: Lookup, layout: KernelLayout, offsets: StructOffsets | None,
              pac_mask: int, name_of: Callable[[int], str],
              describe: Callable[[int], str] | None = None) -> Arm64Unwinder:
        """From the kernel's symbols, layout and BTF (task_struct, pt_regs)."""
        size = thread_size(lookup)
        task_offsets, stackframe = None, STACKFRAME_6_1
        if offsets is not None:
            try:
                task_offsets = TaskOffsets.from_types(offsets)
            except SymbolError:
                task_offsets = None
            try:
                stackframe = offsets.offsetof("pt_regs", "stackframe")
            except SymbolError:
                pass
        stacks = StackMap(cpu_stacks(mem, lookup, layout, size))
        return cls(mem, stacks, task_offsets, size, pac_mask, stackframe, name_of, describe)

    # -- entry points ------------------------------------------------------------

    def task_stack(self, task: int) -> StackRegion:
        if self.task_offsets is None:
            raise SymbolError("task_struct.stack/thread.cpu_context unknown (no BTF): cannot find task stacks")
        return task_stack(self.mem, task, self.task_offsets, self.thread_size)

    def unwind_task(self, task: int, regs: dict[str, int] | None = None,
                    stack_base: int | None = None) -> list[Frame]:
        """From ``regs`` (its CPU's, when it was running) or from its saved cpu_context."""
        stack = self.task_stack(task)
        if regs is None:
            assert self.task_offsets is not None
            regs = saved_context(self.mem, task, self.task_offsets)
            if not stack.contains(regs["sp"] - 1, 1):
                raise CorruptionError(task, f"cpu_context.sp {regs['sp']:#x} is outside its stack "
                                      f"{stack.lo:#x}-{stack.hi:#x}")
        return self._walk(regs, stack)

    def unwind_regs(self, regs: dict[str, int], task: int | None = None) -> list[Frame]:
        return self._walk(regs, self.task_stack(task) if task is not None else None)

    # -- the walk ----------------------------------------------------------------

    def _walk(self, regs: dict[str, int], task: StackRegion | None) -> list[Frame]:
        pc, sp, fp = regs.get("pc", 0), regs.get("sp", 0), regs.get("x29", 0)
        user = pc >> 63 == 0            # by the pc: an emulated CPU's pstate holds only NZCV
        region = self.stacks.find(sp, task) or self.stacks.find(sp - 1, task, 1)
        name = region.name if region else ""
        frames = [Frame(0, pc, sp, regs=dict(regs), method="regs", stack_name="user" if user else name)]
        state = _State(fp, pc, None)
        lr = strip_pac(regs.get("x30", 0), self.pac_mask)
        if not user and lr >> 63 and "+" not in self.describe(pc) and self.name_of(pc):
            # stopped on a function's first instruction: its frame record is not pushed yet,
            # and the caller is only in lr
            frames.append(Frame(1, lr, sp, regs={"pc": lr, "sp": sp, "x29": fp}, method="lr", stack_name=name))
            state.pc = lr
        while frames[-1].stack_name != "user":
            if len(frames) >= MAX_FRAMES:
                frames[-1].note = f"stopped after {MAX_FRAMES} frames"
                break
            try:
                nxt = self._step(state, task)
            except _Stop as stop:
                frames[-1].note = str(stop)
                break
            if nxt is None:
                break
            nxt.level = len(frames)
            frames.append(nxt)
        return frames

    def _step(self, st: _State, task: StackRegion | None) -> Frame | None:
        """The caller's frame from the record at st.fp; None at the end of the chain."""
        if st.fp == 0:
            return None
        if _ENTRY.match(self.name_of(st.pc)):
            return self._exception(st, task)
        fp, lr = self._record(st, task)
        if lr == 0:
            return None
        pc = strip_pac(lr, self.pac_mask)
        frame = Frame(0, pc, st.fp, regs={"pc": pc, "x29": fp, "sp": st.fp}, method="fp", slot=st.fp + 8,
                      stack_name=st.stack.name if st.stack else "")
        st.fp, st.pc = fp, pc
        return frame

    def _record(self, st: _State, task: StackRegion | None) -> tuple[int, int]:
        """The two words at st.fp, after checking where the record lies."""
        if st.fp & 0x7:
            raise _Stop(f"frame pointer {st.fp:#x} is misaligned")
        region = self.stacks.find(st.fp, task, 16)
        if region is None:
            raise _Stop(f"frame record {st.fp:#x} is on no known stack")
        self._enter(st, region)
        try:
            fp, lr = struct.unpack("<2Q", self.mem.read(st.fp, 16))
        except FaultError as err:
            raise _Stop(f"frame record at {st.fp:#x} unreadable ({err.reason or 'not in the dump'})") from None
        if fp and self.stacks.find(fp, task, 16) == region and fp <= st.fp:
            raise _Stop(f"stack going in the wrong direction at {self.describe(st.pc)} "
                        f"(fp {fp:#x} after {st.fp:#x})")
        return fp, lr

    def _exception(self, st: _State, task: StackRegion | None) -> Frame | None:
        """The pt_regs whose stackframe record is at st.fp: the interrupted context."""
        base = st.fp - self.stackframe
        region = self.stacks.find(base, task, len(PT_REGS) * 8)
        if region is None:
            raise _Stop(f"pt_regs at {base:#x} is on no known stack")
        try:
            words = struct.unpack(f"<{len(PT_REGS)}Q", self.mem.read(base, 8 * len(PT_REGS)))
        except PmdbError as err:
            raise _Stop(f"pt_regs at {base:#x} unreadable ({err})") from None
        regs = dict(zip(PT_REGS, words, strict=True))
        user = regs["pstate"] & 0xF == 0       # M[3:0] = EL0t
        self._enter(st, region)
        frame = Frame(0, regs["pc"], regs["sp"], regs=dict(regs), method="exception", exception=regs,
                      slot=None, stack_name="user" if user else region.name)
        st.fp, st.pc = regs["x29"], regs["pc"]
        return frame

    def _enter(self, st: _State, region: StackRegion) -> None:
        """Move to the stack a record is on; never back to one the walk left."""
        if st.stack is not None and region != st.stack:
            if region.name + str(region.cpu) in st.left:
                raise _Stop(f"the stack returns to the {region} it left")
            st.left.add(st.stack.name + str(st.stack.cpu))
        st.stack = region

