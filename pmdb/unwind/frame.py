"""Frame: one unwound stack frame, whichever unwinder produced it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Frame:
    """One frame of an unwound stack."""

    level: int
    pc: int
    sp: int
    cfa: int | None = None
    regs: dict[str, int] = field(default_factory=dict)  # registers known in this frame
    method: str = "regs"      # regs (from the thread's context), cfi, fp, orc, scan, exception
    note: str = ""            # why unwinding stopped after this frame, or an exception marker
    # kernel stacks (pmdb.os.linux.arch.x86_64.unwind); defaults keep every other unwinder's frames unchanged
    slot: int | None = None   # where pc was read from the stack (crash's [addr] column)
    exception: dict[str, int] | None = None   # the pt_regs / iret frame this frame came from
    stack_name: str = ""      # the stack this frame is on: "task", "IRQ", "NMI", "#DB", "user" ...
    # pc is a return address (a caller frame not interrupted by a signal): the call sits just
    # before it, and after a call that never returns (abort, a noreturn helper) pc is already
    # the next function's first byte, so lookups (symbol, CFI) use pc - 1, as gdb does
    call_site: bool = False

    @property
    def lookup_pc(self) -> int:
        """The address that names this frame: pc, or pc - 1 for a return address."""
        return self.pc - 1 if self.call_site and self.pc else self.pc

    @property
    def fp(self) -> int | None:
        return self.regs.get("rbp", self.regs.get("ebp", self.regs.get("i6", self.regs.get("x29"))))
