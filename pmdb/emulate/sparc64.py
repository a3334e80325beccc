"""SPARC V9 (64-bit) CPU: pmdb's own interpreter, because unicorn cannot run SPARC64 code.

Each instruction is decoded once into a closure (sparc64_decode), cached by
address and dropped when its page is written. The untraced loop is a handful of
bytecodes per instruction: a dict hit, the call, one compare for annulled delay
slots, two assignments. Stops need no per-instruction test: the sentinel and the
breakpoints are closures planted in the code cache for the length of a run, and
the budget is the length of the ``for`` loop. Register windows, spill and fill:
sparc64_windows. Guest problems (faults, unimplemented instructions) end a run
with a Stop; they never raise.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.arch import Arch
from pmdb.emulate.engine import Engine, Stop, TraceEvent, Tracer
from pmdb.emulate.pager import DemandPager
from pmdb.emulate.sparc64_decode import decode
from pmdb.emulate.sparc64_mem import PAGE, GuestMemory
from pmdb.emulate.sparc64_ops import ASI, CCR, FPRS, M64, SLOT_NAMES, W32, GuestTrap, Op, Y
from pmdb.emulate.sparc64_windows import RegisterFile
from pmdb.errors import CommandError, FaultError, PmdbError

SENTINEL_CANDIDATES = (0xDEAD0000, 0x5E5E0000, 0xFEED00000000)
_SLOTS = {name: i for i, name in enumerate(SLOT_NAMES[:32])} | {
    "y": Y, "ccr": CCR, "asi": ASI, "fprs": FPRS}
_SLOT_MASKS = {Y: W32, CCR: 0xFF, ASI: 0xFF, FPRS: 7}
_COUNTERS = ("cwp", "cansave", "canrestore", "otherwin", "cleanwin")


class _Halt(Exception):
    """Raised by a planted sentinel or breakpoint closure: the run ends before that pc."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _halter(reason: str) -> Op:
    def f(npc: int) -> int:
        raise _Halt(reason)
    return f


def _fast_loop(code: dict[int, Op], fetch: Callable[[int], Op], pc: int, npc: int,
               budget: int) -> tuple[int, int, int, BaseException | None]:
    """Run up to ``budget`` instructions: (pc, npc, executed, what stopped it or None)."""
    i = 0
    try:
        for i in range(budget):  # noqa: B007 - i is the count when something stops the loop
            try:
                f = code[pc]
            except KeyError:
                f = fetch(pc)
            nn = f(npc)
            if nn < 0:              # the delay slot is annulled: ~nn is the next pc
                pc = ~nn
                npc = pc + 4
            else:
                pc = npc
                npc = nn
    except (_Halt, GuestTrap, FaultError, KeyboardInterrupt) as why:
        return pc, npc, i, why
    return pc, npc, budget, None


class SparcV9(Engine):
    """A SPARC V9 CPU over a DemandPager; see the module docstring."""

    def __init__(self, arch: Arch, pager: DemandPager,
                 describe: Callable[[int], str] | None = None) -> None:
        if arch.name != "sparc64":
            raise CommandError(f"the SPARC V9 interpreter cannot run {arch.name} code")
        self.arch = arch
        self.pager = pager
        self.windows = RegisterFile(pager)
        self.r = self.windows.r
        self.mem = GuestMemory(pager, self.flush_page)
        self.describe = describe
        self._code: dict[int, Op] = {}
        self._meta: dict[int, tuple[bytes, tuple[tuple[str, int], ...]]] = {}
        self._stops: dict[int, Op] = {}
        self._pc, self._npc = 0, 4
        self._npc_given = False
        self._ticks = 0
        self.sentinel = self._pick_sentinel()
        pager.on_write = self._on_write

    def _pick_sentinel(self) -> int:
        for addr in SENTINEL_CANDIDATES:
            if not self.pager.parent.readable(addr, 1):
                return addr
        raise PmdbError("no free address for the return sentinel")

    # -- registers ------------------------------------------------------------------------

    def reg(self, name: str) -> int:
        n = self.arch.reg_name(name)
        slot = _SLOTS.get(n)
        if slot is not None:
            return self.r[slot]
        if n == "pc":
            return self._pc
        if n == "npc":
            return self._npc
        if n == "tstate":       # CCR, ASI and CWP as the trap state holds them
            return (self.r[CCR] << 32) | (self.r[ASI] << 24) | self.windows.cwp
        if n in _COUNTERS:
            return self.windows.counters()[n]
        raise CommandError(f"unknown register %{name.lstrip('%')}")

    def set_reg(self, name: str, value: int) -> None:
        n = self.arch.reg_name(name)
        value &= M64
        slot = _SLOTS.get(n)
        if slot is not None:
            if slot:                                # %g0 stays 0
                self.r[slot] = value & _SLOT_MASKS.get(slot, M64)
        elif n == "pc":
            self._pc = value
            if not self._npc_given:                 # pc alone: npc follows it
                self._npc = (value + 4) & M64
        elif n == "npc":
            self._npc, self._npc_given = value, True
        elif n == "tstate":
            self.r[CCR], self.r[ASI] = (value >> 32) & 0xFF, (value >> 24) & 0xFF
        elif n in _COUNTERS:
            raise CommandError(f"%{n} cannot be set: the emulator manages the register windows")
        else:
            raise CommandError(f"unknown register %{name.lstrip('%')}")

    def registers(self) -> dict[str, int]:
        out = {name: self.reg(name) for name in self.arch.regs}
        out["npc"] = self._npc
        for name in ("ccr", "asi", "fprs", *_COUNTERS):
            out[name] = self.reg(name)
        return out

    # -- the code cache -------------------------------------------------------------------

    def _fetch(self, pc: int) -> Op:
        """Decode the instruction at pc (cached unless a stop is planted there)."""
        if pc & 3:
            raise GuestTrap("fault", f"misaligned pc {pc:#x}")
        try:
            page = self.pager.page(pc)
        except FaultError:
            raise GuestTrap("fault", f"fetch from unmapped page {pc & -PAGE:#x}") from None
        raw = bytes(page[pc & (PAGE - 1):(pc & (PAGE - 1)) + 4])
        f, slots = decode(int.from_bytes(raw, "big"), pc, self)
        self.mem.code_pages.add(pc & -PAGE)
        self._meta[pc] = (raw, tuple((SLOT_NAMES[s], s) for s in slots))
        if pc not in self._stops:
            self._code[pc] = f
        return f

    def flush_page(self, base: int) -> None:
        """Forget decoded code in the page at base (it was written); stops stay planted."""
        code = self._code
        for a in range(base, base + PAGE, 4):
            code.pop(a, None)
        self.mem.code_pages.discard(base)
        for a, f in self._stops.items():
            if a & -PAGE == base:
                code[a] = f

    def flush_code(self, addr: int) -> None:
        self.flush_page(addr & -PAGE)

    def _on_write(self, addr: int, n: int) -> None:
        base = addr & -PAGE
        while base < addr + n:
            if base in self.mem.code_pages:
                self.flush_page(base)
            base += PAGE

    def tick(self) -> int:
        self._ticks += 1
        return self._ticks

    def decoded(self, pc: int) -> tuple[bytes, tuple[tuple[str, int], ...]]:
        """(instruction bytes, registers it writes as (name, slot)) for an executed pc."""
        if pc not in self._meta:
            self._fetch(pc)
        return self._meta[pc]

    # -- running --------------------------------------------------------------------------

    def run(self, *, sentinel: int | None, budget: int, breakpoints: frozenset[int] = frozenset(),
            trace: Tracer | None = None) -> Stop:
        if budget <= 0:
            raise CommandError("the instruction budget must be positive")
        if sentinel is not None and self._pc == sentinel:
            return self._settle(Stop("return", self._pc, 0))
        stop = self._one(trace)                     # the first instruction ignores breakpoints
        if stop is not None:
            return self._settle(stop)
        if budget == 1:
            return self._settle(Stop("budget", self._pc, 1, "1 instruction executed"))
        self._plant(sentinel, breakpoints)
        try:
            if trace is None:
                pc, npc, n, why = _fast_loop(self._code, self._fetch, self._pc, self._npc,
                                             budget - 1)
                self._pc, self._npc = pc, npc
            else:
                n, why = self._trace_loop(trace, budget - 1)
        finally:
            self._unplant()
        return self._settle(self._stop(why, 1 + n, budget))

    def step(self, trace: Tracer | None = None) -> Stop:
        stop = self._one(trace)
        return self._settle(stop if stop is not None else Stop("step", self._pc, 1))

    def flush_windows(self) -> bool:
        """Spill every window but the current one to its stack frame (what ``flushw`` does);
        False if a frame is not writable (the windows from there on stay in registers)."""
        try:
            self.windows.flushw()
        except GuestTrap:
            return False
        return True

    def _settle(self, stop: Stop) -> Stop:
        """A stopped CPU's callers are on the stack, as the kernel leaves a process it
        stops in a trap: so the unwinder and ::print see every frame."""
        self.flush_windows()
        return stop

    def _plant(self, sentinel: int | None, breakpoints: frozenset[int]) -> None:
        stops = {a: _halter("breakpoint") for a in breakpoints}
        if sentinel is not None:
            stops[sentinel] = _halter("return")
        self._stops = stops
        self._code.update(stops)

    def _unplant(self) -> None:
        for a in self._stops:
            self._code.pop(a, None)
        self._stops = {}

    def _stop(self, why: BaseException | None, count: int, budget: int) -> Stop:
        pc = self._pc
        if why is None:
            return Stop("budget", pc, count, f"{budget} instructions executed")
        if isinstance(why, KeyboardInterrupt):
            raise why
        if isinstance(why, _Halt):
            return Stop(why.reason, pc, count)
        return self._trap(why, pc, count)

    def _trap(self, why: BaseException, pc: int, count: int) -> Stop:
        reason = why.reason if isinstance(why, GuestTrap) else "fault"
        detail = why.detail if isinstance(why, GuestTrap) else str(why)
        if self.describe is not None:           # the Stop carries the pc; add sym+off
            detail = f"{detail} at {self.describe(pc)}"
        return Stop(reason, pc, count, detail)

    def _one(self, trace: Tracer | None) -> Stop | None:
        """Execute the instruction at pc, breakpoint or not; a Stop only if it trapped."""
        self._npc_given = False
        pc, npc = self._pc, self._npc
        mark = len(self.pager.writes)
        try:
            f = self._code.get(pc) if pc not in self._stops else None
            nn = (f or self._fetch(pc))(npc)
        except (GuestTrap, FaultError) as why:
            return self._trap(why, pc, 0)
        self._pc, self._npc = (~nn, ~nn + 4) if nn < 0 else (npc, nn)
        if trace is not None:
            self._emit(trace, pc, mark)
        return None

    def _emit(self, trace: Tracer, pc: int, mark: int) -> None:
        raw, slots = self._meta[pc]
        r, writes = self.r, self.pager.writes
        stores = [(a, len(d), int.from_bytes(d, "big")) for a, d in writes[mark:]]
        trace(TraceEvent(pc, raw, {name: r[s] for name, s in slots}, stores))

    def _trace_loop(self, trace: Tracer, budget: int) -> tuple[int, BaseException | None]:
        """The loop with a TraceEvent per executed instruction (annulled slots are not)."""
        code, fetch, emit, writes = self._code, self._fetch, self._emit, self.pager.writes
        pc, npc, i = self._pc, self._npc, 0
        try:
            for i in range(budget):  # noqa: B007 - i is the count when a stop comes
                try:
                    f = code[pc]
                except KeyError:
                    f = fetch(pc)
                mark = len(writes)
                nn = f(npc)
                emit(trace, pc, mark)
                if nn < 0:
                    pc, npc = ~nn, ~nn + 4
                else:
                    pc, npc = npc, nn
        except (_Halt, GuestTrap, FaultError, KeyboardInterrupt) as why:
            return i, why
        finally:
            self._pc, self._npc = pc, npc
        return budget, None


def make_engine(arch: Arch, pager: DemandPager,
                describe: Callable[[int], str] | None = None) -> SparcV9:
    """The factory pmdb.emulate.call looks for; ``describe`` (e.g. SymbolTable.describe)
    names the place in fault and unimplemented-instruction details."""
    return SparcV9(arch, pager, describe)
