"""x86-64 and i386 engines on unicorn, with memory paged in from the dump on demand.

Unicorn shares each page's bytes with the DemandPager (``mem_map_ptr`` over the
pager's bytearray), so a write by the code is at once visible to pmdb's reads
and nothing is copied twice. A page is mapped when unicorn first faults on it.
The untraced path installs no per-instruction hook, so it runs at unicorn's
speed; tracing adds a code hook (and a write hook), and ``ctl_flush_tb`` is
called whenever hooks change because translated blocks keep the hooks they
were translated with. Every UcError becomes a Stop or a pmdb error here.
"""

from __future__ import annotations

import ctypes
from typing import Any

import capstone
import unicorn
from unicorn import x86_const as X

from pmdb.arch import Arch
from pmdb.emulate.engine import Engine, Stop, TraceEvent, Tracer
from pmdb.emulate.pager import DemandPager
from pmdb.emulate.watchdog import WATCHDOG
from pmdb.emulate.x86_regs import FULL_REG, MSR, REG_IDS, SIDE_REGS
from pmdb.errors import CommandError, FaultError, PmdbError

SENTINEL_CANDIDATES = {"x86_64": (0xDEAD0000, 0x5E5E0000, 0xFEED0000_0000),
                       "i386": (0xDEAD0000, 0x5E5E0000, 0xFEED0000)}

# Budgets up to this are counted exactly; a larger one is a runaway guard: the code runs
# uncounted at full speed under a time limit, and only past it are `budget` more
# instructions counted (so a run never stops before its budget).
EXACT_BUDGET = 1_000_000

MAX_INSN = 15       # the longest x86 instruction

_ACCESS = {
    unicorn.UC_MEM_READ_UNMAPPED: "read from",
    unicorn.UC_MEM_WRITE_UNMAPPED: "write to",
    unicorn.UC_MEM_FETCH_UNMAPPED: "fetch from",
}


class UnicornX86(Engine):
    """An x86-64 or i386 CPU; see the module docstring."""

    def __init__(self, arch: Arch, pager: DemandPager) -> None:
        if arch.name not in ("x86_64", "i386"):
            raise CommandError(f"no unicorn engine for {arch.name}")
        self.arch = arch
        self.pager = pager
        self._ids = REG_IDS[arch.name]
        self._full = FULL_REG[arch.name]
        self._side: dict[str, int] = dict.fromkeys(SIDE_REGS[arch.name], 0)
        mode = unicorn.UC_MODE_64 if arch.name == "x86_64" else unicorn.UC_MODE_32
        try:
            self.uc: Any = self._make_uc(mode)
        except unicorn.UcError as err:
            raise PmdbError(f"cannot start unicorn: {err}") from None
        self._buffers: dict[int, Any] = {}       # keeps the ctypes views (and so the pages) alive
        self._fault = ""
        self._fault_pc: int | None = None
        self._stop_why: tuple[str, str] | None = None
        self.record_writes = False               # hook memory writes into pager.writes
        self.sentinel = self._pick_sentinel()
        self._decoded: dict[int, tuple[int, bytes, tuple[tuple[str, int], ...]]] = {}
        self._code_pages: set[int] = set()
        self.read_reg = _fast_reader(self.uc, arch.bits)
        cs_arch, cs_mode = arch.capstone_mode()
        self._cs = capstone.Cs(cs_arch, cs_mode)
        self._cs.detail = True
        for base, buf in pager.pages.items():
            self._map(base, buf)
        pager.on_new_page = self._map
        self.uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        uc: Any = self.uc
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_interrupt)
        if arch.name == "x86_64":
            uc.hook_add(unicorn.UC_HOOK_INSN, self._on_syscall, aux1=X.UC_X86_INS_SYSCALL)

    def _make_uc(self, mode: int) -> Any:
        """The unicorn instance (Any: the stubs are the py2 binding). A subclass configures
        what must be set before the CPU first runs (CPU model, TLB mode) here."""
        return unicorn.Uc(unicorn.UC_ARCH_X86, mode)

    # -- memory -----------------------------------------------------------------------

    def _code_bytes(self, addr: int, size: int) -> bytes:
        """An instruction's bytes, as the CPU sees them."""
        return bytes(self.uc.mem_read(addr, size))

    def _pick_sentinel(self) -> int:
        for addr in SENTINEL_CANDIDATES[self.arch.name]:
            if not self.pager.parent.readable(addr, 1):
                return addr
        raise PmdbError("no free address for the return sentinel")

    def _map(self, base: int, buf: bytearray) -> None:
        self._map_buffer(base, buf, "page")

    def _map_buffer(self, at: int, buf: bytearray, what: str) -> None:
        """Let unicorn use the pager's own bytes at ``at`` (no copy: writes land in the page)."""
        view = (ctypes.c_char * len(buf)).from_buffer(buf)
        try:
            self.uc.mem_map_ptr(at, len(buf), unicorn.UC_PROT_ALL, ctypes.addressof(view))
        except unicorn.UcError as err:
            raise FaultError(at, len(buf), f"cannot map {what} in the emulator: {err}") from None
        self._buffers[at] = view

    def _on_unmapped(self, uc: Any, access: int, addr: int, size: int, value: int, _: Any) -> bool:
        try:
            self.pager.page(addr)          # maps it through on_new_page
        except FaultError:
            what = _ACCESS.get(access, "access to")
            # the pc unicorn reports after the run is stale when no hook synced it
            self._fault_pc = addr if access == unicorn.UC_MEM_FETCH_UNMAPPED else self.pc
            self._fault = f"{what} unmapped page {addr & self.pager.mask:#x} (address {addr:#x})"
            return False
        except PmdbError as err:
            self._fault = str(err)
            return False
        return True

    def _on_interrupt(self, uc: Any, intno: int, _: Any) -> None:
        # nothing the guest does reaches the host: a system call only stops the run
        what = {3: "int3", 0x80: "int 0x80: a system call, not emulated"}.get(intno, "trap")
        self._stop_why = ("fault", f"interrupt {intno} ({what})")
        uc.emu_stop()

    def _on_syscall(self, uc: Any, _: Any) -> None:
        self._stop_why = ("fault", "system call (syscall instruction, not emulated)")
        uc.emu_stop()

    def _on_write(self, uc: Any, access: int, addr: int, size: int, value: int, _: Any) -> None:
        value &= (1 << (8 * size)) - 1
        self.pager.writes.append((addr, value.to_bytes(size, "little")))
        if self._mem_log is not None:
            self._mem_log.append((addr, size, value))
        if self._code_pages and addr & self.pager.mask in self._code_pages:
            self._forget_code(addr & self.pager.mask)

    def _forget_code(self, page: int) -> None:
        self._code_pages.discard(page)
        for a in [a for a in self._decoded if a & self.pager.mask == page]:
            del self._decoded[a]

    _mem_log: list[tuple[int, int, int]] | None = None

    # -- registers ----------------------------------------------------------------------

    def reg(self, name: str) -> int:
        reg = self.arch.reg_name(name)
        if reg in self._side:
            return self._side[reg]
        try:
            if reg in MSR:
                return self.uc.msr_read(MSR[reg])
            return self.uc.reg_read(self._ids[reg])
        except KeyError:
            raise CommandError(f"unknown register %{name.lstrip('%')}") from None
        except unicorn.UcError as err:
            raise CommandError(f"cannot read %{reg}: {err}") from None

    def set_reg(self, name: str, value: int) -> None:
        reg = self.arch.reg_name(name)
        value &= (1 << self.arch.bits) - 1 if reg not in MSR else (1 << 64) - 1
        if reg in self._side:
            self._side[reg] = value
            return
        try:
            if reg in MSR:
                # an MSR write flushes unicorn's translated code: skip it when nothing changes
                if self.uc.msr_read(MSR[reg]) != value:
                    self.uc.msr_write(MSR[reg], value)
            else:
                self.uc.reg_write(self._ids[reg], value)
        except KeyError:
            raise CommandError(f"unknown register %{name.lstrip('%')}") from None
        except unicorn.UcError as err:
            raise CommandError(f"cannot set %{reg} to {value:#x}: {err}") from None

    def registers(self) -> dict[str, int]:
        return {r: self.reg(r) for r in self.arch.regs}

    # -- decoding (for the trace) -------------------------------------------------------

    def decoded(self, addr: int, size: int) -> tuple[int, bytes, tuple[tuple[str, int], ...]]:
        """(pc, bytes, registers it writes as (name, unicorn id)), cached by address.

        A store into a page drops that page's entries (see _on_write), so code the
        guest rewrites is decoded again.
        """
        if size > MAX_INSN:
            size = MAX_INSN     # unicorn's hook says 0xf1f1f1f1 for an invalid instruction (ud2)
        hit = self._decoded.get(addr)
        if hit is not None and len(hit[1]) == size:
            return hit
        raw = self._code_bytes(addr, size)
        written: list[tuple[str, int]] = []
        for insn in self._cs.disasm(raw, addr, 1):
            try:
                _, regs_written = insn.regs_access()
            except capstone.CsError:  # capstone cannot say: report nothing rather than fail
                regs_written = []
            for rid in regs_written:
                name = self._full.get(insn.reg_name(rid) or "")
                if name is not None and all(name != n for n, _ in written):
                    written.append((name, self._ids[name]))
        entry = (addr, raw, tuple(written))
        self._decoded[addr] = entry
        self._code_pages.add(addr & self.pager.mask)
        return entry

    # -- running ------------------------------------------------------------------------

    def run(self, *, sentinel: int | None, budget: int, breakpoints: frozenset[int] = frozenset(),
            trace: Tracer | None = None) -> Stop:
        if budget <= 0:
            raise CommandError("the instruction budget must be positive")
        start = self.pc
        hooks = []
        counter = _Counter(start, breakpoints, budget, trace, self)
        if trace is not None or self.record_writes:
            self._mem_log = [] if trace is not None else None
            hooks.append(self.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, self._on_write))
        if trace is not None:
            hooks.append(self.uc.hook_add(unicorn.UC_HOOK_CODE, counter.on_code))
        else:
            for bp in breakpoints:
                hooks.append(self.uc.hook_add(unicorn.UC_HOOK_CODE, counter.on_breakpoint,
                                              begin=bp, end=bp))
        if hooks:
            self.uc.ctl_flush_tb()
        try:
            return self._start(start, sentinel, budget, counter)
        finally:
            counter.flush()
            self._mem_log = None
            if hooks:
                self._drop_hooks(hooks)

    def _drop_hooks(self, hooks: list[int]) -> None:
        """Delete hooks for good. unicorn only unlinks a deleted hook at the end of the next
        emu_start, and code translated before then keeps calling it (a write hook left
        that way made later untraced runs 2.4x slower): so run an empty emulation (start
        == until) to unlink them, then drop the translations."""
        pc = self.pc
        for h in hooks:
            self.uc.hook_del(h)
        try:
            self.uc.emu_start(self.sentinel, self.sentinel)
        except unicorn.UcError:
            pass
        self.set_reg(self.arch.pc, pc)
        self.uc.ctl_flush_tb()

    def step(self, trace: Tracer | None = None) -> Stop:
        stop = self.run(sentinel=None, budget=1, trace=trace)
        if stop.reason == "budget":
            return Stop("step", stop.pc, stop.instructions)
        return stop

    def _start(self, start: int, sentinel: int | None, budget: int, counter: _Counter) -> Stop:
        self._fault = ""
        self._fault_pc = None
        self._stop_why = None
        until = sentinel if sentinel is not None else self.sentinel
        timed_out = False
        try:
            fast = counter.count < 0 and budget > EXACT_BUDGET
            if fast:
                fast, timed_out = self._fast(start, until, budget, counter)
                start = self.pc
                if timed_out:
                    # blocks translated for the uncounted run (a loop chained to itself)
                    # would never reach the count: translate them again
                    self.uc.ctl_flush_tb()
            if not fast:
                self.uc.emu_start(start, until, count=budget)
        except unicorn.UcError as err:
            pc = self._fault_pc if self._fault_pc is not None else self.pc
            self.set_reg(self.arch.pc, pc)
            detail = self._fault or _uc_text(err)
            if not self._fault and err.errno == unicorn.UC_ERR_INSN_INVALID:
                return Stop("unimplemented", pc, counter.count, f"invalid instruction at {pc:#x}")
            return Stop("fault", pc, counter.count, detail)
        pc = self.pc
        if self._stop_why is not None:
            return Stop(self._stop_why[0], pc, counter.count, self._stop_why[1])
        if counter.hit is not None:
            return Stop("breakpoint", pc, counter.count)
        if sentinel is not None and pc == sentinel:
            return Stop("return", pc, counter.count)
        if timed_out:
            return Stop("budget", pc, -1, f"more than {budget} instructions")
        return Stop("budget", pc, budget if counter.count < 0 else counter.count)

    def _fast(self, start: int, until: int, budget: int, counter: _Counter) -> tuple[bool, bool]:
        """Run without unicorn's instruction count (which costs 4x: a C hook on every
        instruction) under a time limit. Returns (finished, timed_out). Without that hook
        unicorn does not know the pc of a faulting instruction, so a fault rolls the CPU
        and memory back and reports (False, False): the caller re-runs counted."""
        snap = self._snapshot()
        token = WATCHDOG.arm(self.uc, max(1.0, budget / 10e6))  # 10M instructions/s, >= 1 s
        try:
            self.uc.emu_start(start, until)
        except unicorn.UcError:
            WATCHDOG.disarm(token)
            self._rollback(snap)
            return False, False
        timed_out = WATCHDOG.disarm(token)
        if self._stop_why is not None or counter.hit is not None or self.pc == until:
            return True, False
        return not timed_out, timed_out

    def _snapshot(self) -> tuple[Any, dict[int, bytes], int]:
        pager = self.pager
        return self.uc.context_save(), {b: bytes(p) for b, p in pager.pages.items()}, len(pager.writes)

    def _rollback(self, snap: tuple[Any, dict[int, bytes], int]) -> None:
        context, pages, nwrites = snap
        self.uc.context_restore(context)
        pager = self.pager
        for base, buf in pager.pages.items():
            buf[:] = pages[base] if base in pages else pager.pristine(base)
        del pager.writes[nwrites:]
        self._fault = ""
        self._fault_pc = None
        self.uc.ctl_flush_tb()


class _Counter:
    """Per-run hook state: instruction count, breakpoints, and the trace of the previous insn.

    A code hook runs before its instruction, so the registers an instruction wrote
    are read when the hook of the next instruction (or the end of the run) comes.
    """

    def __init__(self, start: int, breakpoints: frozenset[int], budget: int,
                 trace: Tracer | None, engine: UnicornX86) -> None:
        self.count = 0 if trace is not None else -1
        self.hit: int | None = None
        self.skip_first = start in breakpoints
        self.start = start
        self.breakpoints = breakpoints
        self.trace = trace
        self.engine = engine
        self.pending: tuple[int, bytes, tuple[tuple[str, int], ...]] | None = None

    def on_breakpoint(self, uc: Any, addr: int, size: int, _: Any) -> None:
        if self.skip_first and addr == self.start:
            self.skip_first = False
            return
        self.hit = addr
        uc.emu_stop()

    def on_code(self, uc: Any, addr: int, size: int, _: Any) -> None:
        if self.pending is not None:
            self.flush()
        if addr in self.breakpoints:
            if self.skip_first and addr == self.start:
                self.skip_first = False
            else:
                self.hit = addr
                uc.emu_stop()
                return
        self.skip_first = False
        self.count += 1
        self.pending = self.engine.decoded(addr, size)

    def flush(self) -> None:
        """Report the instruction whose hook came last, now that it has executed."""
        if self.pending is None or self.trace is None:
            return
        pc, raw, written = self.pending
        self.pending = None
        read = self.engine.read_reg
        writes = {name: read(uid) for name, uid in written}
        log = self.engine._mem_log
        mem = list(log) if log else []
        if log:
            log.clear()
        self.trace(TraceEvent(pc, raw, writes, mem))


def _fast_reader(uc: Any, bits: int) -> Any:
    """reg_read without the binding's per-call dispatch (4x faster; the trace reads a
    register or two per instruction). Falls back to uc.reg_read if the binding changes."""
    try:
        from unicorn.unicorn_py3.unicorn import uclib

        fn, handle = uclib.uc_reg_read, uc._uch
    except (ImportError, AttributeError):
        return uc.reg_read
    buf = ctypes.c_uint64() if bits == 64 else ctypes.c_uint32()
    ref = ctypes.byref(buf)

    def read(rid: int) -> int:
        fn(handle, rid, ref)
        return buf.value

    return read


def _uc_text(err: unicorn.UcError) -> str:
    try:
        return str(err)
    except Exception:  # a binding that cannot format its own error
        return f"unicorn error {getattr(err, 'errno', '?')}"
