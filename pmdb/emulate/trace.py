"""The ``-t`` view: one line per executed instruction.

``0x401347  lookup+0x7  mov ecx, dword ptr [rip + 0x2d1b]  rcx=0x3a``: address,
symbol+offset, disassembly (pmdb's cached disassembler, so each address is
decoded once however often a loop runs it), the registers the instruction
wrote and the stores it made.
"""

from __future__ import annotations

from collections.abc import Callable

from pmdb.disasm import Disassembler, disassembler_for
from pmdb.emulate.engine import TraceEvent
from pmdb.errors import PmdbError
from pmdb.target import Target


class TraceFormatter:
    """Turns TraceEvents into lines; ``emit`` receives each line."""

    def __init__(self, target: Target, emit: Callable[[str], None]) -> None:
        self.target = target
        self.emit = emit
        self.dis: Disassembler = disassembler_for(target)
        self.hex_width = target.arch.ptr_size * 2
        self._where: dict[int, str] = {}
        self._text: dict[tuple[int, bytes], str] = {}

    def __call__(self, ev: TraceEvent) -> None:
        self.emit(self.line(ev))

    def line(self, ev: TraceEvent) -> str:
        regs = " ".join(f"{name}={value:#x}" for name, value in ev.writes.items())
        stores = " ".join(f"[{addr:#x}]={value:#x}" for addr, _size, value in ev.stores)
        effects = " ".join(x for x in (regs, stores) if x)
        return f"{ev.pc:0{self.hex_width}x}  {self.where(ev.pc):<20} {self.text(ev):<44} {effects}".rstrip()

    def where(self, pc: int) -> str:
        hit = self._where.get(pc)
        if hit is None:
            hit = self._where[pc] = self.target.symbols.describe(pc)
        return hit

    def text(self, ev: TraceEvent) -> str:
        key = (ev.pc, ev.insn)
        hit = self._text.get(key)
        if hit is None:
            hit = self._text[key] = self._decode(ev)
        return hit

    def _decode(self, ev: TraceEvent) -> str:
        try:
            insn = self.dis.decode(ev.pc)
        except PmdbError:
            insn = None
        if insn is not None and insn.raw == ev.insn:
            return self.dis.text(insn)
        # the code was patched or written by the guest: decode the bytes that ran
        import capstone

        cs = capstone.Cs(*self.target.arch.capstone_mode())
        for i in cs.disasm(ev.insn, ev.pc, 1):
            return f"{i.mnemonic:<7} {i.op_str}".rstrip()
        return f"(bad) {ev.insn.hex()}"
