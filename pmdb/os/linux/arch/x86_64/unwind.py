"""The x86-64 kernel unwinder: ORC from the dump, across exception frames and stacks.

It follows the kernel's own ``unwind_next_frame`` (arch/x86/kernel/unwind_orc.c)
so that it finds what the kernel itself would: the ORC entry of each return
address says where the caller's stack pointer is (and, for entry code, where
a ``struct pt_regs`` holds the interrupted context). Every read is checked
against the known stacks (pmdb.os.linux.arch.x86_64.stacks); a step that leaves them, goes
down a stack, or returns to a stack it left ends the walk with a one-line
reason in the last frame's ``note``.

Frames follow crash's reading: a frame's ``pc`` is a return address read at
``slot`` (crash's ``[addr]`` column) and ``sp`` is the stack pointer after the
return; an ``exception`` frame carries the pt_regs it came from; the first
frame (``method == "regs"``) comes from the CPU's registers or the frame the
task left when it was switched out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout
from pmdb.os.linux.arch.x86_64 import orc, stack_height
from pmdb.os.linux.arch.x86_64.stacks import (
    TaskOffsets,
    cpu_stacks,
    inactive_frame,
    task_stack,
    thread_size,
)
from pmdb.os.linux.stacks.regions import StackMap, StackRegion
from pmdb.symbols.kmodules import KernelModule, StructOffsets
from pmdb.unwind.frame import Frame

# struct pt_regs, in order (arch/x86/include/asm/ptrace.h); names as in NT_PRSTATUS
PT_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
           "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss")
IRET_REGS = ("rip", "cs", "eflags", "rsp", "ss")
IRET_OFFSET = 8 * PT_REGS.index("rip")
MAX_FRAMES = 256
_MAX_SCAN_TRIES = 64        # candidate return addresses a scan tries before giving up
# what the kernel assumes when ORC has no entry (orc_fp_entry): a frame-pointer frame
FP_ENTRY = orc.OrcEntry(16, -16, orc.REG_BP, orc.REG_PREV_SP, orc.TYPE_CALL)
_SP_REGS = {orc.REG_R10: "r10", orc.REG_R13: "r13", orc.REG_DI: "rdi", orc.REG_DX: "rdx"}

Lookup = Callable[[str], "int | None"]
# unpackers of the word counts the walk reads (a word, an iret frame, a pt_regs)
_UNPACK = {n: struct.Struct(f"<{n}Q").unpack_from for n in (1, 5, 21)}


class _Stop(Exception):
    """The walk cannot go on; the message becomes the last frame's note."""


# the thunks retpolines and return-stack mitigations call through (arch/x86/lib/retpoline.S)
_THUNKS = ("__x86_indirect_thunk_", "__x86_indirect_call_thunk_", "__x86_indirect_jump_thunk_",
           "__x86_return_thunk", "__x86_return_skl", "retbleed_return_thunk", "srso_return_thunk",
           "srso_safe_ret", "srso_alias_return_thunk", "zen_untrain_ret", "entry_untrain_ret")


@dataclass
class _State:
    """The registers an unwind step starts from."""

    ip: int
    sp: int
    bp: int | None
    regs: dict[str, int] | None     # what get_reg() sees: CPU registers or a pt_regs
    full: bool                      # regs is a full pt_regs, not only its iret part
    signal: bool                    # ip is exact (interrupted), not a return address
    stack: StackRegion | None
    left: set[str] = field(default_factory=set)    # stacks the walk has come up from


class _Reader:
    """Stack words, each region read in one piece from the page of the lowest word asked for
    to its top (a sleeping task uses the top of its 16 KiB stack: reading all of it cost
    four pages per task of a compressed dump); reads off every known stack fail."""

    def __init__(self, mem: AddressSpace, stacks: StackMap, task: StackRegion | None) -> None:
        self.mem, self.stacks, self.task = mem, stacks, task
        self._cache: dict[tuple[int, int], tuple[int, bytes | None]] = {}    # by (lo, hi)

    def region(self, addr: int, n: int = 8) -> StackRegion | None:
        task = self.task
        if task is not None and task.lo <= addr and addr + n <= task.hi:
            return task
        return self.stacks.find(addr, None, n)

    def words(self, addr: int, count: int) -> tuple[int, ...]:
        n = 8 * count
        region = self.region(addr, n)
        if region is None:
            raise _Stop(f"{addr:#x} is on no known stack")
        start, data = self._bytes(region, addr)
        try:
            if data is not None:
                return _UNPACK[count](data, addr - start) if count in _UNPACK else \
                    struct.unpack_from(f"<{count}Q", data, addr - start)
            return struct.unpack(f"<{count}Q", self.mem.read(addr, n))
        except FaultError as err:
            raise _Stop(f"stack word at {addr:#x} unreadable ({err.reason or 'not in the dump'})") from None

    def word(self, addr: int) -> int:
        """One stack word; the common case (on the task's stack, its bytes read) inline."""
        task = self.task
        if task is not None and task.lo <= addr and addr + 8 <= task.hi:
            hit = self._cache.get((task.lo, task.hi))
            if hit is not None and hit[1] is not None and addr >= hit[0]:
                return int.from_bytes(hit[1][addr - hit[0]:addr - hit[0] + 8], "little")
        return self.words(addr, 1)[0]

    def held(self, addr: int, n: int) -> bytes | None:
        """The bytes at addr on the task's stack, read with the rest of the stack (None when
        they cannot be, and the caller reads them itself)."""
        if self.task is None or not self.task.contains(addr, n):
            return None
        start, data = self._bytes(self.task, addr)
        return data[addr - start:addr - start + n] if data is not None else None

    def _bytes(self, region: StackRegion, addr: int) -> tuple[int, bytes | None]:
        """(where the bytes start, the bytes up to the region's top) covering addr."""
        hit = self._cache.get((region.lo, region.hi))
        if hit is None or addr < hit[0]:
            start = max(region.lo, addr & ~0xFFF)
            try:
                hit = (start, self.mem.read(start, region.hi - start))
            except PmdbError:
                hit = (start, None)      # partly missing: fall back to word reads
            self._cache[region.lo, region.hi] = hit
        return hit


class KernelUnwinder:
    """Unwinds kernel stacks of one dump; build once, use for every task."""

    def __init__(self, mem: AddressSpace, finder: orc.OrcFinder, stacks: StackMap,
                 task_offsets: TaskOffsets | None, size: int, ret_from_fork: int | None = None,
                 describe: Callable[[int], str] | None = None) -> None:
        self.mem, self.orc, self.stacks = mem, finder, stacks
        self.task_offsets, self.thread_size = task_offsets, size
        self.ret_from_fork = ret_from_fork
        self.describe = describe or (lambda a: f"{a:#x}")

    @classmethod
    def build(cls, mem: AddressSpace, lookup: Lookup, layout: KernelLayout,
              offsets: StructOffsets | None, modules: Iterable[KernelModule], release: str,
              describe: Callable[[int], str] | None = None) -> KernelUnwinder:
        """From the kernel's symbols, layout and BTF offsets (for modules' ORC, the exception
        stacks and task_struct); SymbolError when the kernel has no ORC tables."""
        finder = orc.orc_finder(mem, lookup, list(modules), offsets, release)
        size = thread_size(lookup)
        task_offsets = TaskOffsets.from_optional(offsets)
        regions = cpu_stacks(mem, lookup, layout, offsets, size)
        return cls(mem, finder, StackMap(regions), task_offsets, size, lookup("ret_from_fork"), describe)

    # -- entry points ------------------------------------------------------------

    def task_stack(self, task: int, base: int | None = None) -> StackRegion:
        if self.task_offsets is None:
            raise SymbolError("task_struct.stack/thread.sp unknown (no BTF): cannot find task stacks")
        return task_stack(self.mem, task, self.task_offsets, self.thread_size, base)

    def unwind_task(self, task: int, regs: dict[str, int] | None = None,
                    stack_base: int | None = None) -> list[Frame]:
        """A task's kernel stack: from ``regs`` (the CPU's, when it was running) or else from
        the frame it left at ``thread.sp``. CorruptionError when ``task`` is not a task.
        ``stack_base``: task->stack when the task list has read it already."""
        stack = self.task_stack(task, stack_base)
        reader = _Reader(self.mem, self.stacks, stack)
        if regs is not None:
            return self._walk(self._from_regs(regs, reader), reader)
        assert self.task_offsets is not None
        try:
            saved = inactive_frame(self.mem, task, self.task_offsets, stack, reader.held)
        except CorruptionError as err:
            return self._scan_start(stack, reader, self._scan_from(task, stack), err.why)
        return self._walk(self._from_switch(saved, reader), reader)

    def unwind_regs(self, regs: dict[str, int], task: int | None = None) -> list[Frame]:
        """A stack from a full register set, on ``task``'s stack or a CPU's."""
        stack = self.task_stack(task) if task is not None else None
        reader = _Reader(self.mem, self.stacks, stack)
        return self._walk(self._from_regs(regs, reader), reader)

    # -- starting points ---------------------------------------------------------

    def _from_regs(self, regs: dict[str, int], reader: _Reader) -> tuple[Frame, _State]:
        ip, sp = regs.get("rip", 0), regs.get("rsp", 0)
        region = reader.region(sp) or reader.region(sp - 8)
        user = bool(regs.get("cs", 0) & 3)
        frame = Frame(0, ip, sp, regs=dict(regs), method="regs",
                      stack_name="user" if user else (region.name if region else ""))
        return frame, _State(ip, sp, regs.get("rbp"), dict(regs), True, True, region)

    def _from_switch(self, saved: dict[str, int], reader: _Reader) -> tuple[Frame, _State]:
        ip, sp = saved["rip"], saved["rsp"]
        region = reader.region(sp - 8)
        frame = Frame(0, ip, sp, regs=dict(saved), method="regs", slot=sp - 8,
                      stack_name=region.name if region else "")
        return frame, _State(ip, sp, saved.get("rbp"), None, False, ip == self.ret_from_fork, region)

    def _scan_from(self, task: int, stack: StackRegion) -> int:
        """Where a scan starts: thread.sp when it is at least on the stack, else its bottom."""
        assert self.task_offsets is not None
        try:
            sp = self.mem.ptr(task + self.task_offsets.thread_sp)
        except FaultError:
            return stack.lo
        return sp & ~7 if stack.contains(sp) else stack.lo

    def _scan_start(self, stack: StackRegion, reader: _Reader, start: int, why: str) -> list[Frame]:
        """No usable saved frame: try each word from ``start`` up that points into kernel
        code as a return address, and keep the first that unwinds to the end of the stack
        (else the one that got furthest). Stale words below the live frames fail fast."""
        best: list[Frame] = []
        tried = 0
        for slot in range(start, stack.hi - 8, 8):
            try:
                value = reader.word(slot)
            except _Stop:
                continue
            if not self.orc.in_text(value):
                continue
            frame = Frame(0, value, slot + 8, regs={"rip": value, "rsp": slot + 8}, method="scan",
                          slot=slot, stack_name=stack.name)
            frames = self._walk((frame, _State(value, slot + 8, None, None, False, False, stack)), reader)
            if len(frames) > len(best):
                best = frames
            tried += 1
            if not frames[-1].note or tried >= _MAX_SCAN_TRIES:
                break
        note = f"started by scanning the stack ({why})"
        if not best:
            return [Frame(0, 0, stack.hi, method="scan", stack_name=stack.name,
                          note=f"no return address anywhere on the stack; {note}")]
        best[0].note = f"{note}; {best[0].note}" if best[0].note else note
        return best

    # -- the walk ----------------------------------------------------------------

    def _walk(self, start: tuple[Frame, _State], reader: _Reader) -> list[Frame]:
        frame, state = start
        frames = [frame]
        while frame.stack_name != "user":
            if len(frames) >= MAX_FRAMES:
                frame.note = f"stopped after {MAX_FRAMES} frames"
                break
            try:
                nxt = self._step(state, reader)
            except _Stop as stop:
                frame.note = str(stop)
                break
            if nxt is None:
                break
            frame.cfa = nxt.sp if nxt.method != "exception" else None
            nxt.level = len(frames)
            frames.append(nxt)
            frame = nxt
        return frames

    def _step(self, st: _State, rd: _Reader) -> Frame | None:
        """One unwind_next_frame(): the caller's frame, None at the end of the stack."""
        entry = self.orc.find(st.ip if st.signal else st.ip - 1)
        if entry is not None:
            return self._apply(entry, st, rd, "orc")
        if st.bp is None:
            raise _Stop(f"no ORC entry for {self.describe(st.ip)} and no frame pointer")
        try:
            # the kernel's own guess for code without ORC (BPF, a module whose table is
            # gone): a frame-pointer frame; the frames it finds are marked "fp"
            return self._apply(FP_ENTRY, st, rd, "fp")
        except _Stop as err:
            raise _Stop(f"no ORC entry for {self.describe(st.ip)}; as a frame-pointer frame: {err}") from None

    def _apply(self, entry: orc.OrcEntry, st: _State, rd: _Reader, method: str) -> Frame | None:
        if entry.type == orc.TYPE_END and st.signal and self._in_thunk(st.ip):
            # objtool marks the retpoline and return thunks as the end of the stack
            # (UNWIND_HINT_EMPTY), but a CPU stopped in one was called there: its caller's
            # return address is where the thunk's few instructions left the stack
            entry = orc.OrcEntry(0, 0, orc.REG_UNDEFINED, orc.REG_UNDEFINED, orc.TYPE_UNDEFINED)
        if entry.type == orc.TYPE_END:
            return None
        if entry.type == orc.TYPE_UNDEFINED:
            entry, method = self._from_code(st, entry), "code"
        sp = self._prev_sp(entry, st, rd)
        prev_sp, prev_stack = st.sp, st.stack
        if entry.type == orc.TYPE_CALL:
            frame = self._call_frame(entry, sp, st, rd, method)
        elif entry.type in (orc.TYPE_REGS, orc.TYPE_REGS_PARTIAL):
            frame = self._regs_frame(entry, sp, st, rd)
        else:
            raise _Stop(f"unknown ORC type {entry.type} for {self.describe(st.ip)}")
        self._find_bp(entry, sp, st, rd)
        if frame.stack_name != "user" and st.stack is not None:
            self._check_progress(st, prev_sp, prev_stack)
        return frame

    def _in_thunk(self, ip: int) -> bool:
        return self.describe(ip).split("+")[0].startswith(_THUNKS)

    def _from_code(self, st: _State, undefined: orc.OrcEntry) -> orc.OrcEntry:
        """A call frame worked out from the instructions, where objtool left no ORC data
        (stack_height.py); the walk stops, as the kernel's would, when they cannot tell."""
        ip = st.ip if st.signal else st.ip - 1
        start = self.orc.entry_start(ip)
        height = None
        if start is not None and 0 <= ip + 1 - start <= stack_height.MAX_CODE:
            try:
                height = stack_height.stack_height(self.mem.read(start, ip + 1 - start), start, st.ip)
            except FaultError:
                height = None
        if height is None:
            raise _Stop(f"no unwind information for {self.describe(st.ip)} ({undefined})")
        return orc.OrcEntry(height + 8, 0, orc.REG_SP, orc.REG_UNDEFINED, orc.TYPE_CALL)

    def _prev_sp(self, entry: orc.OrcEntry, st: _State, rd: _Reader) -> int:
        """The caller's stack pointer (the CFA) by the entry's base register."""
        reg = entry.sp_reg
        if reg == orc.REG_SP:
            return st.sp + entry.sp_offset
        if reg in (orc.REG_BP, orc.REG_BP_INDIRECT):
            if st.bp is None:
                raise _Stop(f"frame pointer unknown at {self.describe(st.ip)}")
            sp = st.bp + entry.sp_offset
            return rd.word(sp) if reg == orc.REG_BP_INDIRECT else sp
        if reg == orc.REG_SP_INDIRECT:
            # the top of an IRQ stack holds the stack pointer it was entered from
            return rd.word(st.sp) + entry.sp_offset
        name = _SP_REGS.get(reg)
        if name is None:
            raise _Stop(f"unknown ORC base register {reg} at {self.describe(st.ip)}")
        value = st.regs.get(name) if st.regs is not None and st.full else None
        if value is None:
            raise _Stop(f"{name} needed at {self.describe(st.ip)} but not saved")
        return value

    def _call_frame(self, entry: orc.OrcEntry, sp: int, st: _State, rd: _Reader, method: str) -> Frame:
        slot = sp - 8
        ip = rd.word(slot)
        if not self.orc.is_text(ip):
            raise _Stop(f"return address {ip:#x} at {slot:#x} is not kernel text")
        region = rd.region(slot)
        st.ip, st.sp, st.regs, st.full = ip, sp, None, False
        st.signal = entry.signal              # 6.3+: a hint that the next ip is exact
        self._enter(st, region)
        regs = {"rip": ip, "rsp": sp}
        return Frame(0, ip, sp, regs=regs, method=method, slot=slot,
                     stack_name=region.name if region else "")

    def _regs_frame(self, entry: orc.OrcEntry, sp: int, st: _State, rd: _Reader) -> Frame:
        """An exception / interrupt / syscall entry: the interrupted context's registers."""
        if entry.type == orc.TYPE_REGS:
            regs = dict(zip(PT_REGS, rd.words(sp, len(PT_REGS)), strict=True))
            full = True
        else:
            regs = dict(zip(IRET_REGS, rd.words(sp, len(IRET_REGS)), strict=True))
            full = False
        ip, new_sp = regs["rip"], regs["rsp"]
        user = bool(regs["cs"] & 3)
        region = None if user else (rd.region(new_sp) or rd.region(new_sp - 8))
        if not user and not self.orc.is_text(ip):
            raise _Stop(f"saved registers at {sp:#x} hold rip {ip:#x}, not kernel text")
        st.ip, st.sp, st.regs, st.full, st.signal = ip, new_sp, regs, full, True
        if not user and region is None:
            # a #DF from a task that ran off its stack saves an rsp in the guard page below
            # it: the interrupted frame is still shown, and its caller's frame may lie back
            # on the stack (the next read says so when it does not)
            st.stack = None
            return Frame(0, ip, new_sp, regs=dict(regs), method="exception", exception=regs)
        if not user:
            self._enter(st, region)
        return Frame(0, ip, new_sp, regs=dict(regs), method="exception", exception=regs,
                     stack_name="user" if user else (region.name if region else ""))

    def _find_bp(self, entry: orc.OrcEntry, sp: int, st: _State, rd: _Reader) -> None:
        if entry.bp_reg == orc.REG_UNDEFINED:
            if st.regs is not None and st.full and "rbp" in st.regs:
                st.bp = st.regs["rbp"]
        elif entry.bp_reg == orc.REG_PREV_SP:
            st.bp = rd.word(sp + entry.bp_offset)
        elif entry.bp_reg == orc.REG_BP:
            if st.bp is None:
                raise _Stop("frame pointer unknown")
            st.bp = rd.word(st.bp + entry.bp_offset)
        else:
            raise _Stop(f"unknown ORC frame-pointer register {entry.bp_reg}")

    def _enter(self, st: _State, region: StackRegion | None) -> None:
        """Move to the stack the new sp is on; never back to one the walk left."""
        if region is None:
            raise _Stop(f"stack pointer {st.sp:#x} is on no known stack")
        if st.stack is not None and region is not st.stack and region != st.stack:
            if region.name + str(region.cpu) in st.left:
                raise _Stop(f"the stack returns to the {region} it left")
            st.left.add(st.stack.name + str(st.stack.cpu))
        st.stack = region

    def _check_progress(self, st: _State, prev_sp: int, prev_stack: StackRegion | None) -> None:
        if st.sp <= prev_sp and st.stack == prev_stack:
            raise _Stop(f"stack going in the wrong direction at {self.describe(st.ip)} "
                        f"(sp {st.sp:#x} after {prev_sp:#x})")
