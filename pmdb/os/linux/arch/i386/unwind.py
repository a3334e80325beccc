"""The i386 kernel unwinder: frame pointers, across pt_regs frames and IRQ stacks.

Debian's 32-bit kernels are built with CONFIG_UNWINDER_FRAME_POINTER: every
function pushes ebp and points ebp at it, so ``[ebp]`` is the caller's ebp
and ``[ebp+4]`` the return address. The entry code (entry_32.S) marks a
``struct pt_regs`` by an encoded frame pointer, the regs' address with its
top bit cleared (ENCODE_FRAME_POINTER), as the kernel's own unwind_frame.c
decodes it; the interrupted context's ip, sp and bp come from there. Since
5.3 the entry code completes pt_regs for kernel-mode traps (the CPU pushes no
esp/ss then), so ``regs->sp`` is the interrupted stack pointer. IRQ stacks
are entered by call_on_stack, which keeps ebp, so the chain crosses them.
Every read is checked against the known stacks; a step that leaves them or
goes down a stack ends the walk with a one-line reason in the last frame's
``note``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from pmdb.errors import FaultError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout
from pmdb.os.linux.arch.i386.stacks import around, inactive_frame, irq_stacks, task_stack, thread_size
from pmdb.os.linux.arch.x86_64.stacks import TaskOffsets
from pmdb.os.linux.stacks.regions import StackMap, StackRegion
from pmdb.symbols.kmodules import KernelModule, StructOffsets
from pmdb.unwind.frame import Frame

# struct pt_regs (arch/x86/include/asm/ptrace.h, 32-bit); names as in NT_PRSTATUS
PT_REGS = ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs", "orig_eax",
           "eip", "cs", "eflags", "esp", "ss")
_ENCODED = 0x80000000       # the bit ENCODE_FRAME_POINTER clears
_TASKLIKE = ("task", "stack")   # stacks whose top may hold the task's user pt_regs
_KERNEL_CS, _KERNEL_DS = 0x60, 0x68   # GDT_ENTRY_KERNEL_CS/DS * 8 (asm/segment.h, 32-bit)
_SHIM_SPAN = 0x400                  # doublefault_shim is a few hundred bytes
MAX_FRAMES = 256

Lookup = Callable[[str], "int | None"]


class _Stop(Exception):
    """The walk cannot go on; the message becomes the last frame's note."""


class _End(Exception):
    """The walk reached the bottom of a kernel thread's stack: nothing more, nothing wrong."""


class _Stacks:
    """The stacks one walk may use: the known ones and, when the dump does not say where
    the IRQ stacks are (no per-CPU symbols), the THREAD_SIZE-aligned block a frame pointer
    moves to ("stack": IRQ stacks are THREAD_SIZE pages, and a CPU's walk that began on
    one reaches its task's stack so). The walk never returns to a stack it left."""

    def __init__(self, known: list[StackRegion], guess_irq: bool, size: int, floor: int) -> None:
        self.map, self.guess_irq, self.size, self.floor = StackMap(known), guess_irq, size, floor
        self.left: set[int] = set()

    def find(self, addr: int, n: int = 4) -> StackRegion | None:
        region = self.map.find(addr, None, n)
        if region is None and self.guess_irq and addr >= self.floor:
            block = around(addr, self.size)
            if block.contains(addr, n):
                # an IRQ stack, or the task's own when the walk began on an IRQ stack
                region = StackRegion("stack", block.lo, block.hi)
        return region

    def enter(self, region: StackRegion, came_from: StackRegion | None) -> None:
        if came_from is None or region == came_from:
            return
        if region.lo in self.left:
            raise _Stop(f"the stack returns to the {region} it left")
        self.left.add(came_from.lo)
        if self.map.find(region.lo, None, 1) is None:
            self.map = StackMap([*self.map.regions, region])


class FramePointerUnwinder:
    """Unwinds i386 kernel stacks of one dump; build once, use for every task."""

    def __init__(self, mem: AddressSpace, is_text: Callable[[int], bool], irq: list[StackRegion],
                 task_offsets: TaskOffsets | None, size: int, page_offset: int,
                 describe: Callable[[int], str] | None = None) -> None:
        self.mem, self.is_text, self.irq = mem, is_text, irq
        self.task_offsets, self.thread_size, self.page_offset = task_offsets, size, page_offset
        self.describe = describe or (lambda a: f"{a:#x}")
        self.shim: int | None = None        # doublefault_shim, where a double fault's regs are

    @classmethod
    def build(cls, mem: AddressSpace, lookup: Lookup, layout: KernelLayout,
              offsets: StructOffsets | None, modules: Iterable[KernelModule],
              describe: Callable[[int], str] | None = None) -> FramePointerUnwinder:
        """From the kernel's symbols, layout and (when there are types) task_struct offsets."""
        size = thread_size(lookup)
        task_offsets = TaskOffsets.from_optional(offsets)
        unwinder = cls(mem, text_test(lookup, list(modules), layout), irq_stacks(mem, lookup, layout, size),
                       task_offsets, size, layout.page_offset_base, describe)
        unwinder.shim = lookup("doublefault_shim")
        return unwinder

    # -- the Unwinder protocol ---------------------------------------------------

    def task_stack(self, task: int) -> StackRegion:
        if self.task_offsets is None:
            raise SymbolError("task_struct.stack/thread.sp unknown (no kernel types): cannot find task stacks")
        return task_stack(self.mem, task, self.task_offsets.stack, self.thread_size, self.page_offset)

    def unwind_task(self, task: int, regs: dict[str, int] | None = None,
                    stack_base: int | None = None) -> list[Frame]:
        """A task's kernel stack from ``regs`` (its CPU's) or the frame at ``thread.sp``."""
        if regs is not None and self.task_offsets is None:
            return self.unwind_regs(regs)
        stack = self.task_stack(task)
        if regs is not None:
            return self._walk(regs, self._stacks(stack), method="regs")
        assert self.task_offsets is not None
        saved = inactive_frame(self.mem, task, self.task_offsets.thread_sp, stack, self.is_text)
        return self._walk(saved, self._stacks(stack), method="regs", slot=saved["esp"] - 4)

    def unwind_regs(self, regs: dict[str, int], task: int | None = None) -> list[Frame]:
        """A stack from a register set, on ``task``'s stack or the block around esp."""
        stack = self.task_stack(task) if task is not None else around(regs.get("esp", 0), self.thread_size)
        return self._walk(regs, self._stacks(stack), method="regs")

    def _stacks(self, task: StackRegion) -> _Stacks:
        return _Stacks([task, *self.irq], not self.irq, self.thread_size, self.page_offset)

    # -- the walk ----------------------------------------------------------------

    def _walk(self, regs: dict[str, int], stacks: _Stacks, method: str, slot: int | None = None) -> list[Frame]:
        ip, sp, bp = regs.get("eip", 0), regs.get("esp", 0), regs.get("ebp", 0)
        region = stacks.find(sp) or stacks.find(sp - 4)
        user = bool(regs.get("cs", 0) & 3)
        frame = Frame(0, ip, sp, regs=dict(regs), method=method, slot=slot,
                      stack_name="user" if user else (region.name if region else ""))
        frames = [frame]
        prev: tuple[StackRegion | None, int] = (region, sp)
        while frame.stack_name != "user" and bp:
            if len(frames) >= MAX_FRAMES:
                frame.note = f"stopped after {MAX_FRAMES} frames"
                break
            try:
                nxt, bp, prev = self._step(bp, stacks, prev)
            except _Stop as stop:
                frame.note = str(stop)
                break
            except _End:
                break
            frame.cfa = nxt.sp if nxt.method != "exception" else None
            nxt.level = len(frames)
            frames.append(nxt)
            frame = nxt
        return frames

    def _step(self, bp: int, stacks: _Stacks,
              prev: tuple[StackRegion | None, int]) -> tuple[Frame, int, tuple[StackRegion | None, int]]:
        """One frame up from ebp: a call frame, or a pt_regs when ebp is encoded; a
        syscall's user pt_regs at the top of the task stack when ebp is the user's."""
        try:
            if not bp & _ENCODED:
                return self._regs_frame(bp | _ENCODED, stacks)
            return self._call_frame(bp, stacks, prev)
        except _Stop:
            at = self._entry_regs(prev)
            if at is not None:
                return self._regs_frame(at, stacks)
            region, sp = prev
            if region is not None and region.name in _TASKLIKE and region.hi - sp <= 4 * len(PT_REGS) + 16:
                raise _End from None    # the task's first frame (a boot CPU's idle task starts so)
            raise

    def _entry_regs(self, prev: tuple[StackRegion | None, int]) -> int | None:
        """The user-mode pt_regs at the top of the task stack the walk just reached the
        end of (the kernel's is_last_task_frame: entry_SYSENTER_32 encodes no frame
        pointer, so ebp there is still the user's). 5.x+ leaves no padding above it,
        older kernels 8 or 16 bytes."""
        region, sp = prev
        if region is None or region.name not in _TASKLIKE:
            return None
        size = 4 * len(PT_REGS)
        for pad in (0, 8, 16):
            at = region.hi - pad - size
            if not 0 <= at - sp < 64:
                continue
            try:
                words = self._words(at, len(PT_REGS))
            except _Stop:
                return None
            cs, ss = words[PT_REGS.index("cs")], words[PT_REGS.index("ss")]
            if cs & 3 == 3 and ss & 3 == 3:
                return at
        return None

    def _call_frame(self, bp: int, stacks: _Stacks,
                    prev: tuple[StackRegion | None, int]) -> tuple[Frame, int, tuple[StackRegion | None, int]]:
        region = stacks.find(bp, 8)
        if region is None:
            raise _Stop(f"frame pointer {bp:#x} is on no known stack")
        if region == prev[0] and bp < prev[1]:
            raise _Stop(f"stack going in the wrong direction (ebp {bp:#x} below {prev[1]:#x})")
        next_bp, ret = self._words(bp, 2)
        if not self.is_text(ret):
            raise _Stop(f"return address {ret:#x} at {bp + 4:#x} is not kernel text")
        stacks.enter(region, prev[0])
        frame = Frame(0, ret, bp + 8, regs={"eip": ret, "esp": bp + 8, "ebp": next_bp}, method="fp",
                      slot=bp + 4, stack_name=region.name)
        if self.shim is not None and self.shim <= ret < self.shim + _SHIM_SPAN:
            at = self._shim_regs(bp + 8, next_bp)
            if at is not None:
                next_bp = at & ~_ENCODED        # walk on as from an entry's encoded pt_regs
        return frame, next_bp, (region, bp + 8)

    def _shim_regs(self, lo: int, hi: int) -> int | None:
        """A double fault switches tasks (a TSS, no pt_regs pushed): doublefault_shim
        builds a pt_regs of the faulting context from the TSS as a local of its own frame,
        [lo, hi), and passes it to exc_double_fault. Found by its kernel cs and ss and an
        eip in kernel text."""
        size = 4 * len(PT_REGS)
        if not 0 < hi - lo <= 1024:
            return None
        try:
            words = self._words(lo, (hi - lo) // 4)
        except _Stop:
            return None
        cs, ss, ip = PT_REGS.index("cs"), PT_REGS.index("ss"), PT_REGS.index("eip")
        for i in range(len(words) - len(PT_REGS) + 1):
            if words[i + cs] == _KERNEL_CS and words[i + ss] == _KERNEL_DS and self.is_text(words[i + ip]):
                return lo + 4 * i if lo + 4 * i + size <= hi else None
        return None

    def _regs_frame(self, at: int, stacks: _Stacks) -> tuple[Frame, int, tuple[StackRegion | None, int]]:
        """An entry's pt_regs: the interrupted context (user mode ends the walk)."""
        region = stacks.find(at, 4 * len(PT_REGS) - 8)
        if region is None:
            raise _Stop(f"encoded frame pointer names pt_regs at {at:#x}, on no known stack")
        n = len(PT_REGS) if stacks.find(at, 4 * len(PT_REGS)) else len(PT_REGS) - 2
        regs = dict(zip(PT_REGS, self._words(at, n), strict=False))
        user = bool(regs["cs"] & 3)
        if not user and not stacks.find(regs.get("esp", 0)):
            regs["esp"] = at + 4 * PT_REGS.index("esp")      # a kernel trap before 5.3: not saved
        ip, sp = regs["eip"], regs["esp"]
        if not user and ip == 0 and at + 4 * len(PT_REGS) >= region.hi - 16:
            raise _End      # a kernel thread's pt_regs at the top of its stack, never filled in
        if not user and not self.is_text(ip):
            raise _Stop(f"saved registers at {at:#x} hold eip {ip:#x}, not kernel text")
        frame = Frame(0, ip, sp, regs=dict(regs), method="exception", exception=regs,
                      stack_name="user" if user else region.name)
        return frame, 0 if user else regs["ebp"], (stacks.find(sp), sp)

    def _words(self, addr: int, count: int) -> tuple[int, ...]:
        try:
            return struct.unpack(f"<{count}I", self.mem.read(addr, 4 * count))
        except FaultError as err:
            raise _Stop(f"stack word at {addr:#x} unreadable ({err.reason or 'not in the dump'})") from None


def text_test(lookup: Lookup, modules: list[KernelModule], layout: KernelLayout) -> Callable[[int], bool]:
    """Whether an address is kernel or module text (a return address can only be there).
    With no module list (no types to read ``struct module``) all of module space counts:
    frame pointers still link a module's frames."""
    ranges = [(m.base, m.base + m.size) for m in modules if m.size]
    if not modules:
        ranges.append((layout.modules_start, layout.modules_end))
    for lo, hi in ((lookup("_stext") or lookup("_text"), lookup("_etext")),
                   (lookup("_sinittext"), lookup("_einittext"))):
        if lo is not None and hi is not None:
            ranges.append((lo, hi))

    def is_text(addr: int) -> bool:
        return any(a <= addr < b for a, b in ranges)
    return is_text
