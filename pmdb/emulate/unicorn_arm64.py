"""The AArch64 engine on unicorn, with memory paged in from the dump on demand.

unicorn's AArch64 model runs at EL1 with the MMU off and maps any 64-bit
address flat, so kernel addresses (0xffff...) need no virtual TLB: a page is
mapped when unicorn first faults on it, as for user code. The run loop,
demand paging, tracing and the rollback of an uncounted run are unicorn's,
not x86's, and are shared with UnicornX86; what differs is the register file
(x0..x30, sp, pc, nzcv, and the system registers a kernel reads: sp_el0 holds
``current``, tpidr_el1 the per-CPU offset) and how a trap is read (``brk``).
"""

from __future__ import annotations

from typing import Any

import capstone
import unicorn
from unicorn import arm64_const as A

from pmdb.arch import Arch
from pmdb.emulate.pager import DemandPager
from pmdb.emulate.unicorn_x86 import UnicornX86, _fast_reader
from pmdb.errors import CommandError, PmdbError

SENTINELS = (0xDEAD0000, 0x5E5E0000, 0xFEED00000000)
REG_IDS = {**{f"x{i}": getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)},
           "x29": A.UC_ARM64_REG_X29, "x30": A.UC_ARM64_REG_X30, "sp": A.UC_ARM64_REG_SP,
           "pc": A.UC_ARM64_REG_PC, "pstate": A.UC_ARM64_REG_NZCV,
           "sp_el0": A.UC_ARM64_REG_SP_EL0, "tpidr_el0": A.UC_ARM64_REG_TPIDR_EL0,
           "tpidr_el1": A.UC_ARM64_REG_TPIDR_EL1}
# capstone's name of a written register -> the register a trace reports (w0 is x0's low half)
FULL_REG = {**{f"x{i}": f"x{i}" for i in range(31)}, **{f"w{i}": f"x{i}" for i in range(31)},
            "fp": "x29", "lr": "x30", "x29": "x29", "x30": "x30", "sp": "sp", "wsp": "sp",
            "nzcv": "pstate"}
BRK = 0xD4200000            # brk #imm16: imm16 in bits 5..20


class UnicornArm64(UnicornX86):
    """An AArch64 CPU; see the module docstring."""

    def __init__(self, arch: Arch, pager: DemandPager) -> None:   # noqa: PLW0231 (own setup)
        if arch.name != "aarch64":
            raise CommandError(f"no unicorn AArch64 engine for {arch.name}")
        self.arch = arch
        self.pager = pager
        self._ids = REG_IDS
        self._full = FULL_REG
        self._side: dict[str, int] = {}
        try:
            self.uc: Any = self._make_uc(unicorn.UC_MODE_ARM)
        except unicorn.UcError as err:
            raise PmdbError(f"cannot start unicorn: {err}") from None
        self._buffers: dict[int, Any] = {}
        self._fault = ""
        self._fault_pc: int | None = None
        self._stop_why: tuple[str, str] | None = None
        self.record_writes = False
        self.sentinel = self._pick_sentinel()
        self._decoded: dict[int, tuple[int, bytes, tuple[tuple[str, int], ...]]] = {}
        self._code_pages: set[int] = set()
        self.read_reg = _fast_reader(self.uc, 64)
        self._cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        self._cs.detail = True
        for base, buf in pager.pages.items():
            self._map(base, buf)
        pager.on_new_page = self._map
        self.uc.hook_add(unicorn.UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._on_interrupt)

    def _make_uc(self, mode: int) -> Any:
        uc: Any = unicorn.Uc(unicorn.UC_ARCH_ARM64, mode)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)     # LSE atomics, PAC and BTI hints as the kernel uses
        return uc

    def _pick_sentinel(self) -> int:
        for addr in SENTINELS:
            if not self.pager.parent.readable(addr, 1):
                return addr
        raise PmdbError("no free address for the return sentinel")

    def _on_interrupt(self, uc: Any, intno: int, _: Any) -> None:
        pc = self.pc
        imm = self.brk_imm(pc)
        if imm is not None:
            self._on_brk(pc, imm)
            return
        what = {2: "svc: a system call, not emulated"}.get(intno, "exception")
        self._stop_why = ("fault", f"{what} (unicorn exception {intno}) at {pc:#x}")
        uc.emu_stop()

    def _on_brk(self, pc: int, imm: int) -> None:
        """A ``brk`` in code (a debugger's or the kernel's BUG): the run stops there."""
        self._stop_why = ("fault", f"brk #{imm:#x} at {pc:#x}")
        self.uc.emu_stop()

    def brk_imm(self, pc: int) -> int | None:
        """The immediate of the ``brk`` at pc (unicorn may report pc past it), else None."""
        for at in (pc, pc - 4):
            try:
                word = int.from_bytes(self.pager.read(at, 4), "little")
            except PmdbError:
                continue
            if word & 0xFFE0001F == BRK:
                if at != pc:
                    self.set_reg("pc", at)
                return word >> 5 & 0xFFFF
        return None

    def registers(self) -> dict[str, int]:
        return {r: self.reg(r) for r in self.arch.regs}
