"""The one engine interface every emulated CPU implements (unicorn x86, SPARC interpreter).

An engine owns registers; its memory is a DemandPager over the dump. ``run``
executes until the return sentinel, a breakpoint, the instruction budget, a
fault, or an instruction it cannot execute, and says which in a Stop: problems
the guest code causes are results, never exceptions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from pmdb.arch import Arch
from pmdb.emulate.pager import DemandPager
from pmdb.errors import CommandError

STOP_REASONS = ("return", "breakpoint", "budget", "fault", "unimplemented", "step")


@dataclass
class Stop:
    """Why a run ended, where, and after how many instructions (-1: not counted)."""

    reason: str
    pc: int
    instructions: int
    detail: str = ""

    def describe(self) -> str:
        """One line for the user."""
        text = {
            "return": "returned",
            "breakpoint": f"stopped at breakpoint {self.pc:#x}",
            "budget": f"instruction budget exhausted at {self.pc:#x}"
                      + (f" after {self.instructions} instructions" if self.instructions >= 0 else ""),
            "fault": f"fault at {self.pc:#x}",
            "unimplemented": f"unimplemented instruction at {self.pc:#x}",
            "step": f"stepped to {self.pc:#x}",
        }.get(self.reason, f"{self.reason} at {self.pc:#x}")
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class TraceEvent:
    """One executed instruction: where, its bytes, the registers it changed (and, when the
    engine knows them, the memory stores it made: (addr, size, value))."""

    pc: int
    insn: bytes
    writes: dict[str, int] = field(default_factory=dict)
    stores: list[tuple[int, int, int]] = field(default_factory=list)


Tracer = Callable[[TraceEvent], None]


class Engine(ABC):
    """An emulated CPU over a DemandPager; see the module docstring."""

    arch: Arch
    pager: DemandPager

    @abstractmethod
    def reg(self, name: str) -> int:
        """A register by canonical name (arch.regs, plus "npc" on SPARC)."""

    @abstractmethod
    def set_reg(self, name: str, value: int) -> None:
        """Set a register; CommandError for a name the CPU does not have."""

    @abstractmethod
    def registers(self) -> dict[str, int]:
        """Every register, by canonical name."""

    @abstractmethod
    def run(self, *, sentinel: int | None, budget: int, breakpoints: frozenset[int] = frozenset(),
            trace: Tracer | None = None) -> Stop:
        """Execute until a stop condition (see the module docstring)."""

    @abstractmethod
    def step(self, trace: Tracer | None = None) -> Stop:
        """Execute exactly one instruction."""

    # -- helpers shared by engines ---------------------------------------------------

    @property
    def pc(self) -> int:
        return self.reg(self.arch.pc)

    def canonical(self, name: str) -> str:
        """The canonical spelling of a user's register name, or CommandError."""
        reg = self.arch.reg_name(name)
        if reg not in self.registers():
            raise CommandError(f"unknown register %{name.lstrip('%')}")
        return reg
