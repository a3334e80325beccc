"""Calling Linux kernel functions (arm64) on the emulated CPU: BUG and WARN as the kernel reads them.

Addresses need nothing special on arm64 (unicorn maps kernel addresses flat:
pmdb.emulate.unicorn_arm64), and the call's CPU, thread and stack are chosen
as on x86-64 (pmdb.emulate.kernel.KernelCall): ``current`` is ``sp_el0`` and
the per-CPU offset is ``tpidr_el1``. What is arm64's own is the trap: BUG()
and WARN() are both ``brk #0x800`` (BUG_BRK_IMM) with a ``__bug_table``
entry; a WARN is noted and stepped over as the kernel's brk handler does, a
BUG stops the run.
"""

from __future__ import annotations

from pmdb.arch import Arch
from pmdb.emulate.kernel import BUGFLAG_WARNING, BugTable, bug_table
from pmdb.emulate.pager import DemandPager
from pmdb.emulate.unicorn_arm64 import UnicornArm64
from pmdb.target import Target

BUG_BRK_IMM = 0x800


class KernelArm64(UnicornArm64):
    """UnicornArm64 with the kernel's brk semantics and the notes a run leaves."""

    def __init__(self, arch: Arch, pager: DemandPager, bugs: BugTable | None = None) -> None:
        self.bugs = bugs
        self.notes: list[str] = []               # WARNs passed, reported after the run
        self.kernel_task: int | None = None      # whose stack the call runs on (for $c)
        self.stack_range = (0, 0)
        super().__init__(arch, pager)

    def _on_brk(self, pc: int, imm: int) -> None:
        bug = self.bugs.lookup(pc) if self.bugs is not None and imm == BUG_BRK_IMM else None
        where = bug.where() if bug is not None else f"{pc:#x}"
        if bug is not None and bug.flags & BUGFLAG_WARNING:
            self.notes.append(f"WARNING at {where} ({pc:#x}): stepped over, as the kernel does")
            self.set_reg("pc", pc + 4)
            return
        what = "BUG()" if imm == BUG_BRK_IMM else f"brk #{imm:#x}"
        self._stop_why = ("fault", f"{what} at {where}")
        self.uc.emu_stop()


def kernel_engine(target: Target, pager: DemandPager) -> KernelArm64:
    return KernelArm64(target.arch, pager, bug_table(target))
