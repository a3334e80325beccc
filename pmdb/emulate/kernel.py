"""Calling Linux kernel functions (x86-64) on the emulated CPU: addresses, per-CPU data, stack.

Three things differ from a user core:

* **Addresses.** Kernel addresses (0xffff...) are above the 52-bit physical range
  unicorn's flat (no paging) x86-64 model can map, so KernelX86 runs unicorn
  with a virtual TLB: every page the code touches is given a private physical
  frame (the DemandPager's copy of the dump's page) by a TLB-fill hook. A page
  the dump left out (makedumpfile -d 31) or never had stops the run with the
  address and the dump's reason.
* **The CPU.** Kernel code reads per-CPU data through %gs, so the GS base is
  ``__per_cpu_offset[cpu]`` of the chosen CPU (the ``cpu`` option; default the
  CPU of the chosen thread, else the panic CPU, else 0); ``current`` is then that
  CPU's ``current_task``. The CPU model has SMAP (stac/clac) because kernels patch
  those in for hosts that have it. ``ud2`` is the kernel's BUG()/WARN(): the
  ``__bug_table`` says which; a WARN is noted and stepped over as the kernel's
  trap handler does, a BUG stops the run.
* **The stack.** The call runs on the stack the chosen task is on (its CPU's
  registers, or the frame its last context switch saved): ``stack_gap`` below its
  stack pointer, so the pages come from the dump and code that checks which stack
  it runs on (``object_is_on_stack``, the unwinder) sees a real kernel stack of
  ``current``. Copy-on-write keeps the dump's frames intact. When that stack is not
  in the dump (or too little of it is), the call gets zero pages at an address no
  kernel maps (the x86-64 guard hole), and says so in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import capstone
import unicorn
from capstone import x86_const as CX
from unicorn import x86_const as X

from pmdb.arch import Arch
from pmdb.emulate.engine import Stop
from pmdb.emulate.pager import DemandPager
from pmdb.emulate.unicorn_x86 import UnicornX86
from pmdb.errors import CommandError, FaultError, PmdbError
from pmdb.memory.space import AddressSpace, Chunk
from pmdb.target import Target
from pmdb.threads import Thread

# stac/clac (SMAP) appear in user-access code of kernels patched on hosts with SMAP
CPU_MODEL = X.UC_CPU_X86_BROADWELL
FIRST_FRAME = 0x100000               # physical frames handed to pages, upwards from here
STACK_ROOM = 0x1000                  # at least this much of the task's stack must be in the dump
# never mapped by Linux: the guard holes of 4- and 5-level paging
SCRATCH_STACK_TOPS = (0xFFFF87FFFFF00000, 0xFF0FFFFFFFF00000)
BUGFLAG_WARNING = 1

_ACCESS = {unicorn.UC_MEM_READ: "read from", unicorn.UC_MEM_WRITE: "write to",
           unicorn.UC_MEM_FETCH: "fetch from"}


def is_kernel(target: Target) -> bool:
    """A Linux x86-64 or arm64 kernel dump (the targets KernelX86 and KernelArm64 are for)."""
    return target.arch.name in ("x86_64", "aarch64") and getattr(target.os, "name", "") == "linux"


# -- the engine ---------------------------------------------------------------------------------

class KernelX86(UnicornX86):
    """UnicornX86 with a virtual TLB (kernel addresses) and the kernel's ud2 semantics."""

    def __init__(self, arch: Arch, pager: DemandPager, bugs: BugTable | None = None) -> None:
        self._phys: dict[int, int] = {}          # virtual page -> its physical frame
        self._virt: dict[int, int] = {}          # and back (stores are reported by frame)
        self._next_frame = FIRST_FRAME
        self._scratch: dict[int, Any] = {}       # frames around the sentinel (not the dump's)
        self._fault_page: int | None = None
        self.stack_range = (0, 0)                # zero pages made up here on first touch
        self.bugs = bugs
        self.notes: list[str] = []               # WARNs passed, reported after the run
        self.kernel_task: int | None = None      # whose stack the call runs on (for $c)
        super().__init__(arch, pager)
        self.uc.hook_add(unicorn.UC_HOOK_TLB_FILL, self._on_tlb_fill)
        self.uc.hook_add(unicorn.UC_HOOK_INSN_INVALID, self._on_invalid)

    def _make_uc(self, mode: int) -> Any:
        uc: Any = unicorn.Uc(unicorn.UC_ARCH_X86, mode)   # Any: the stubs are the py2 binding
        uc.ctl_set_cpu_model(CPU_MODEL)
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        return uc

    def _code_bytes(self, addr: int, size: int) -> bytes:
        # uc.mem_read takes physical addresses under a virtual TLB; an instruction at the end
        # of the text may be followed by a page the dump left out
        try:
            return self.pager.read(addr, size)
        except PmdbError:
            return self.pager.read(addr, min(size, self.pager.page_size - (addr & ~self.pager.mask)))

    def _map(self, base: int, buf: bytearray) -> None:
        """Give a page that came in a physical frame; the TLB-fill hook points at it."""
        frame = self._frame(buf)
        self._phys[base] = frame
        self._virt[frame] = base

    def _frame(self, buf: bytearray) -> int:
        frame = self._next_frame
        self._map_buffer(frame, buf, "a frame")
        self._next_frame += len(buf)
        return frame

    def _on_write(self, uc: Any, access: int, addr: int, size: int, value: int, _: Any) -> None:
        # under a virtual TLB unicorn reports stores by physical address: give the virtual one
        page = self._virt.get(addr & self.pager.mask)
        if page is not None:
            addr = page | (addr & ~self.pager.mask)
        super()._on_write(uc, access, addr, size, value, _)

    def _on_tlb_fill(self, uc: Any, vaddr: int, access: int, entry: Any, _: Any) -> bool:
        frame = self._phys.get(vaddr)
        if frame is None:
            frame = self._page_in(vaddr, access)
            if frame is None:
                return False
        entry.paddr = frame
        entry.perms = unicorn.UC_PROT_ALL
        return True

    def _page_in(self, vaddr: int, access: int) -> int | None:
        near = self.sentinel & self.pager.mask
        if vaddr in (near, near - self.pager.page_size):
            # unicorn fetches at (and just below) the return sentinel: int3 there, not the dump
            buf = bytearray(b"\xcc" * self.pager.page_size)
            self._scratch[vaddr] = buf
            self._phys[vaddr] = frame = self._frame(buf)
            return frame
        try:
            self.pager.page(vaddr)             # maps it through on_new_page -> _map
        except FaultError as err:
            lo, hi = self.stack_range
            if lo <= vaddr < hi:
                # the stack ran below what the dump has: zero pages, as the base engine's
                # stack gets up front (here only those the code touches, which are few)
                self.pager.allocate(vaddr, self.pager.page_size)
                return self._phys.get(vaddr)
            cause = err.__cause__ if isinstance(err.__cause__, FaultError) else err
            self._fault = f"{_ACCESS.get(access, 'access to')} {vaddr:#x}: {cause.reason or cause}"
            self._fault_page = vaddr
            self._fault_pc = vaddr if access == unicorn.UC_MEM_FETCH else None
            return None
        except PmdbError as err:
            self._fault = str(err)
            return None
        return self._phys.get(vaddr)

    # -- ud2 and other instructions unicorn cannot execute ---------------------------------

    def _on_invalid(self, uc: Any, _: Any) -> bool:
        pc = self.pc
        try:
            is_ud2 = self.pager.read(pc, 2) == b"\x0f\x0b"
        except PmdbError:
            is_ud2 = False
        if not is_ud2:
            self._stop_why = ("unimplemented", f"invalid or unsupported instruction at {pc:#x}")
            return False
        bug = self.bugs.lookup(pc) if self.bugs is not None else None
        where = bug.where() if bug is not None else f"{pc:#x}"
        if bug is not None and bug.flags & BUGFLAG_WARNING:
            # as the kernel's #UD handler does for WARN(): report it and go on after the ud2
            self.notes.append(f"WARNING at {where} ({pc:#x}): stepped over, as the kernel does")
            self.set_reg("rip", pc + 2)
            return True
        self._stop_why = ("fault", f"BUG() (ud2) at {where}")
        return False

    # -- a fault names the address, not only its page ------------------------------------------

    def _start(self, start: int, sentinel: int | None, budget: int, counter: Any) -> Stop:
        self._fault_page = None
        stop = super()._start(start, sentinel, budget, counter)
        page = self._fault_page
        if page is None:
            return stop
        if stop.reason != "fault":
            # a failed TLB fill on a data access ends emu_start without an error
            stop = Stop("fault", stop.pc, counter.count, self._fault)
        if self._fault_pc is None:
            addr = self._operand_address(stop.pc, page)
            if addr is not None and addr != page:
                stop.detail = stop.detail.replace(f"{page:#x}:", f"{addr:#x} (page {page:#x}):", 1)
        return stop

    def _operand_address(self, pc: int, page: int) -> int | None:
        """The faulting instruction's memory operand that lies in ``page``, if one does."""
        try:
            raw = self.pager.read(pc, 16)
        except PmdbError:
            return None
        for insn in self._cs.disasm(raw, pc, 1):
            try:
                ops = insn.operands
            except capstone.CsError:
                return None
            for op in ops:
                if op.type != CX.X86_OP_MEM:
                    continue
                addr = self._effective(insn, op.mem)
                if addr is not None and addr & self.pager.mask == page:
                    return addr
        return None

    def _effective(self, insn: Any, mem: Any) -> int | None:
        addr = mem.disp
        for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
            if reg == 0:
                continue
            name = insn.reg_name(reg)
            value = insn.address + insn.size if name == "rip" else self._full_value(name)
            if value is None:
                return None
            addr += value * scale
        if mem.segment != 0 and insn.reg_name(mem.segment) in ("fs", "gs"):
            addr += self.reg(f"{insn.reg_name(mem.segment)}_base")
        return addr & (1 << 64) - 1

    def _full_value(self, name: str) -> int | None:
        full = self._full.get(name or "")
        if full is None:
            return None
        value = self.reg(full)
        return value & 0xFFFFFFFF if name.startswith("e") or name.endswith("d") else value


# -- BUG and WARN ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BugEntry:
    addr: int
    file: str
    line: int
    flags: int

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file else f"{self.addr:#x}"


class BugTable:
    """The kernel's ``__bug_table`` (struct bug_entry with relative pointers, x86-64), read
    on the first ud2: which ud2 is a WARN and where its source line is."""

    def __init__(self, mem: AddressSpace, start: int, stop: int, layout: dict[str, int]) -> None:
        self.mem = mem
        self.start = start
        self.stop = stop
        self.layout = layout
        self._by_addr: dict[int, tuple[int, int]] | None = None

    def lookup(self, pc: int) -> BugEntry | None:
        if self._by_addr is None:
            self._by_addr = self._read()
        hit = self._by_addr.get(pc)
        if hit is None:
            return None
        entry, flags = hit
        lay = self.layout
        file = ""
        line = 0
        if "file_disp" in lay:
            disp = self.mem.read_int(entry + lay["file_disp"], 4, signed=True)
            try:
                file = self.mem.cstring(entry + lay["file_disp"] + disp, 256).decode("latin-1")
            except PmdbError:
                file = ""
            line = self.mem.read_int(entry + lay["line"], 2)
        return BugEntry(pc, file, line, flags)

    def _read(self) -> dict[int, tuple[int, int]]:
        size = self.layout["size"]
        try:
            raw = self.mem.read(self.start, self.stop - self.start)
        except PmdbError:
            return {}
        out: dict[int, tuple[int, int]] = {}
        at, flags_at = self.layout["bug_addr_disp"], self.layout["flags"]
        for off in range(0, len(raw) - size + 1, size):
            disp = int.from_bytes(raw[off + at:off + at + 4], "little", signed=True)
            flags = int.from_bytes(raw[off + flags_at:off + flags_at + 2], "little")
            out[(self.start + off + at + disp) & (1 << 64) - 1] = (self.start + off, flags)
        return out


def bug_table(target: Target) -> BugTable | None:
    """The dump's bug table, laid out by BTF's struct bug_entry; None without one."""
    start, stop = target.symbols.lookup("__start___bug_table"), target.symbols.lookup("__stop___bug_table")
    bug = target.types.find("struct bug_entry")
    if start is None or stop is None or bug is None or stop.addr <= start.addr:
        return None
    try:
        layout = {m.name: m.offset for m in bug.members}
    except PmdbError:
        return None
    if "bug_addr_disp" not in layout or "flags" not in layout:
        return None   # absolute pointers (not x86-64's layout): no WARN/BUG lookup
    layout["size"] = bug.size
    return BugTable(target.memory, start.addr, stop.addr, layout)


def kernel_engine(target: Target, pager: DemandPager) -> KernelX86:
    return KernelX86(target.arch, pager, bug_table(target))


# -- the call's CPU, thread and stack ------------------------------------------------------------

@dataclass
class KernelCall:
    """Which CPU a kernel function runs on and whose stack it uses; see the module docstring."""

    cpu: int
    per_cpu_base: int
    thread: Thread | None

    @classmethod
    def choose(cls, target: Target, opts: dict[str, Any]) -> KernelCall:
        os: Any = target.os          # a LinuxKernel (is_kernel)
        cpus = os.cpus()
        layout = os.km.layout
        thread = target.thread_by_id(opts["thread"]) if opts["thread"] is not None else None
        cpu = opts["cpu"]
        if cpu is None:
            cpu = _running_on(cpus, thread) if thread is not None else None
        if cpu is None:
            from pmdb.os.linux import sysinfo

            cpu = sysinfo.panic_cpu(os.vars()) or 0
        if not 0 <= cpu < max(layout.nr_cpu_ids, 1):
            raise CommandError(f"emulate: no CPU {cpu} (this kernel has {layout.nr_cpu_ids})")
        if thread is None:
            curr = cpus[cpu].curr if cpu < len(cpus) else None
            thread = target.thread_by_id(curr) if curr else target.current_thread
        return cls(cpu, layout.per_cpu_offset(cpu), thread)

    def enter(self, engine: Any) -> None:
        """What the CPU needs before the call: its per-CPU base in GS (arm64: tpidr_el1, and
        ``current`` in sp_el0)."""
        task = self.thread.address if self.thread is not None else None
        if engine.arch.name == "aarch64":
            engine.set_reg("tpidr_el1", self.per_cpu_base)
            engine.set_reg("sp_el0", task or 0)
        else:
            engine.set_reg("gs_base", self.per_cpu_base)
        engine.kernel_task = task

    def stack_top(self, target: Target, engine: Any, opts: dict[str, Any]) -> int:
        """The stack to call with: below the thread's sp when the dump has that stack, else
        zero pages in a range no kernel maps (see the module docstring)."""
        sp = self.thread.registers.get(target.arch.sp) if self.thread is not None else None
        page = engine.pager.page_size
        size = opts["stack_size"]
        if sp:
            top = (sp - opts["stack_gap"]) & ~0xF
            if _readable(target.memory, top - STACK_ROOM, sp - (top - STACK_ROOM)):
                engine.stack_range = (top - size, top + page)
                return top
        for top in SCRATCH_STACK_TOPS:
            if not any(target.memory.readable(a, 1) for a in range(top - size, top + page, page)):
                engine.stack_range = (top - size, top + page)
                engine.pager.allocate(top - page, page)   # the return address goes there now
                return top
        raise CommandError("emulate: no free kernel range for a stack: give stack = ADDR")


def _running_on(cpus: list[Any], thread: Thread) -> int | None:
    for c in cpus:
        if c.curr and c.curr == thread.address:
            return int(c.index)
    return None


def _readable(mem: AddressSpace, addr: int, size: int) -> bool:
    page = 0x1000
    return all(mem.readable(a, 1) for a in range(addr & ~(page - 1), addr + size, page))


def unwind_emulated(unwinder: Any, engine: Any, regs: dict[str, int]) -> list[Any]:
    """The emulated CPU's kernel stack: the dump's ORC unwinder reading the emulated memory
    (without paging anything in), on the stack of the task the call runs as; the return
    sentinel ends it."""
    import copy

    from pmdb.unwind.frame import Frame

    mine = copy.copy(unwinder)
    mine.mem = _Peek(engine.pager)
    try:
        frames = list(mine.unwind_regs(regs, getattr(engine, "kernel_task", None)))
    except PmdbError as err:
        return [Frame(0, regs.get(engine.arch.pc, 0), regs.get(engine.arch.sp, 0), regs=dict(regs), method="regs",
                      note=str(err))]
    if frames and f"{engine.sentinel:#x}" in (frames[-1].note or ""):
        frames[-1].note = "end of stack (called by ::emulate)"
    return frames


class _Peek(AddressSpace):
    """The pager's pages where it has them, else the dump's: reads that page nothing in (so
    ``$c`` does not add to what the code paged in)."""

    def __init__(self, pager: DemandPager) -> None:
        super().__init__(pager.byteorder, pager.ptr_size)
        self.pager = pager

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        pager, chunks = self.pager, []
        cur, end = addr, addr + n
        while cur < end:
            base = cur & pager.mask
            take = min(end, base + pager.page_size) - cur
            buf = pager.pages.get(base)
            if buf is None:
                chunks += pager.parent.mapping(cur, take)
            else:
                chunks.append(Chunk(cur, take, _Bytes(buf), cur - base))
            cur += take
        return chunks


class _Bytes:
    __slots__ = ("buf",)

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.buf[offset:offset + n])
