"""Decode one SPARC V9 instruction word into its closure and the registers it writes.

``decode(word, pc, cpu)`` is called once per address (the engine caches the
result); everything that can be settled at decode time is: register numbers,
sign-extended immediates, branch targets, which template to use. An
instruction pmdb does not implement decodes to a closure that raises
GuestTrap("unimplemented") when executed, so unreached code never matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pmdb.emulate import sparc64_mem as mem_ops
from pmdb.emulate import sparc64_ops as ops
from pmdb.emulate.sparc64_arith import ARITH_FNS, CC_FNS, Y_FNS
from pmdb.emulate.sparc64_mem import GuestMemory
from pmdb.emulate.sparc64_ops import ASI, CCR, FPRS, G0_SINK, M64, GuestTrap, Op, Y
from pmdb.emulate.sparc64_windows import RegisterFile

Decoded = tuple[Op, tuple[int, ...]]   # closure, register slots it writes (for the trace)


class Cpu(Protocol):
    """What decoded closures need from the engine."""

    r: list[int]
    mem: GuestMemory
    windows: RegisterFile

    def flush_code(self, addr: int) -> None: ...
    def tick(self) -> int: ...


class Unimplemented(Exception):
    """Raised inside the decoder; becomes a closure that stops the run when reached."""


def _sext(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def decode(word: int, pc: int, cpu: Cpu) -> Decoded:
    """The closure for ``word`` at ``pc``; see the module docstring."""
    op = word >> 30
    try:
        if op == 1:
            return _call(word, pc, cpu.r)
        if op == 0:
            return _format2(word, pc, cpu)
        if op == 2:
            return _arith(word, pc, cpu)
        return _memory(word, cpu)
    except Unimplemented as why:
        return _unimplemented(word, str(why)), ()


def _unimplemented(word: int, what: str) -> Op:
    op, op3 = word >> 30, (word >> 19) & 0x3F
    field = f"op2={(word >> 22) & 7}" if op == 0 else f"op3={op3:#x}" if op != 1 else ""
    detail = f"unimplemented SPARC instruction {word:#010x} (op={op} {field}: {what})"

    def f(npc: int) -> int:
        raise GuestTrap("unimplemented", detail)
    return f


def _fields(word: int) -> tuple[int, int, int, bool, int]:
    """rd, rs1, op2 operand (register number or unsigned 64-bit simm13), is-immediate, op3."""
    imm = bool(word & 0x2000)
    b = _sext(word & 0x1FFF, 13) & M64 if imm else word & 31
    return (word >> 25) & 31, (word >> 14) & 31, b, imm, (word >> 19) & 0x3F


# -- op = 1 and op = 0: call, branches, sethi ---------------------------------------------

def _call(word: int, pc: int, r: list[int]) -> Decoded:
    target = (pc + 4 * _sext(word & 0x3FFFFFFF, 30)) & M64

    def f(npc: int) -> int:
        r[15] = pc
        return target
    return f, (15,)


def _format2(word: int, pc: int, cpu: Cpu) -> Decoded:
    r = cpu.r
    op2, annul = (word >> 22) & 7, bool(word & (1 << 29))
    if op2 == 4:                                            # sethi (rd = 0: nop)
        rd = (word >> 25) & 31
        if rd == 0:
            return (lambda npc: npc + 4), ()
        return ops.alu(0x02, r, 0, (word & 0x3FFFFF) << 10, rd, True), (rd,)
    if op2 == 2:                                            # Bicc
        target = (pc + 4 * _sext(word & 0x3FFFFF, 22)) & M64
        return ops.branch_cc(r, (word >> 25) & 15, False, target, annul), ()
    if op2 == 1:                                            # BPcc
        cc = (word >> 20) & 3
        if cc & 1:
            raise Unimplemented("BPcc on a reserved condition-code field")
        target = (pc + 4 * _sext(word & 0x7FFFF, 19)) & M64
        return ops.branch_cc(r, (word >> 25) & 15, cc == 2, target, annul), ()
    if op2 == 3:                                            # BPr
        rcond = (word >> 25) & 7
        if rcond not in ops.RCOND_EXPR or word & (1 << 28):
            raise Unimplemented("BPr with a reserved register condition")
        disp = _sext((((word >> 20) & 3) << 14) | (word & 0x3FFF), 16)
        return ops.branch_reg(r, rcond, (word >> 14) & 31, (pc + 4 * disp) & M64, annul), ()
    if op2 in (5, 6):
        raise Unimplemented("floating-point branch")
    raise Unimplemented("illtrap" if op2 == 0 else "reserved format-2 opcode")


# -- op = 2: arithmetic, control, state registers -----------------------------------------

def _arith(word: int, pc: int, cpu: Cpu) -> Decoded:
    r = cpu.r
    rd, a, b, imm, op3 = _fields(word)
    d = rd or G0_SINK
    out = (rd,) if rd else ()
    if op3 in ops.ALU_EXPR:
        return ops.alu(op3, r, a, b, d, imm), out
    if op3 in ops.CC_OPS:
        return ops.alu_cc(op3, r, a, b, d, imm), out + (CCR,)
    if op3 in (0x25, 0x26, 0x27):
        return ops.shift(op3, (word >> 12) & 1, r, a, b, d, imm), out
    if op3 in ARITH_FNS:
        if op3 == 0x2E and a:
            raise Unimplemented("popc with rs1 != 0")
        extra = ((CCR,) if op3 in CC_FNS else ()) + ((Y,) if op3 in Y_FNS else ())
        return ops.generic(ARITH_FNS[op3], r, a, b, d, imm), out + extra
    if op3 == 0x2C:
        return _movcc(word, r, d, imm), out
    if op3 == 0x2F:
        rcond = (word >> 10) & 7
        if rcond not in ops.RCOND_EXPR:
            raise Unimplemented("movr with a reserved register condition")
        b = _sext(word & 0x3FF, 10) & M64 if imm else b
        return ops.movr(r, rcond, a, b, d, imm), out
    if op3 == 0x28:
        return _rdasr(word, pc, cpu, a, d, imm), out
    if op3 == 0x30:
        return _wrasr(r, rd, a, b, imm)
    return _control(word, op3, pc, cpu, a, b, d, imm, out)


def _movcc(word: int, r: list[int], d: int, imm: bool) -> Op:
    if not word & (1 << 18):
        raise Unimplemented("movcc on floating-point condition codes")
    cc = (word >> 11) & 3
    if cc & 1:
        raise Unimplemented("movcc on a reserved condition-code field")
    b = _sext(word & 0x7FF, 11) & M64 if imm else word & 31
    return ops.movcc(r, (word >> 14) & 15, cc == 2, b, d, imm)


def _rdasr(word: int, pc: int, cpu: Cpu, a: int, d: int, imm: bool) -> Op:
    r = cpu.r
    if a == 15:                                             # stbar / membar
        if d != G0_SINK:
            raise Unimplemented("rd %asr15 (reserved)")
        return lambda npc: npc + 4
    src = {0: Y, 2: CCR, 3: ASI, 6: FPRS}.get(a)
    if src is not None:
        return ops.alu(0x02, r, 0, src, d, False)           # a move from that slot
    if a == 5:                                              # rd %pc
        return ops.alu(0x02, r, 0, pc, d, True)
    if a == 4:                                              # rd %tick: counts, not time
        def f(npc: int) -> int:
            r[d] = cpu.tick()
            return npc + 4
        return f
    raise Unimplemented(f"rd %asr{a}")


def _wrasr(r: list[int], rd: int, a: int, b: int, imm: bool) -> Decoded:
    width = {0: (Y, 0xFFFFFFFF), 2: (CCR, 0xFF), 3: (ASI, 0xFF), 6: (FPRS, 7)}.get(rd)
    if width is None:
        raise Unimplemented("sir" if rd == 15 else f"wr %asr{rd}")
    slot, mask = width

    def f(npc: int) -> int:
        r[slot] = (r[a] ^ (b if imm else r[b])) & mask
        return npc + 4
    return f, (slot,)


_PRIVILEGED = {0x29: "rdpsr", 0x2A: "rdpr", 0x31: "saved/restored", 0x32: "wrpr",
               0x33: "wrtbr", 0x3E: "done/retry"}


def _control(word: int, op3: int, pc: int, cpu: Cpu, a: int, b: int, d: int, imm: bool,
             out: tuple[int, ...]) -> Decoded:
    r, win = cpu.r, cpu.windows
    if op3 == 0x38:
        return _jump(r, pc, a, b, d, imm, None), out
    if op3 == 0x39:
        return _jump(r, pc, a, b, d, imm, win.restore), ()
    if op3 in (0x3C, 0x3D):
        return _window(r, a, b, d, imm, win.save if op3 == 0x3C else win.restore), out
    if op3 == 0x2B:
        return _then_next(win.flushw), ()
    if op3 == 0x3B:                                         # flush: drop decoded code there
        return _then_next(lambda: cpu.flush_code((r[a] + (b if imm else r[b])) & M64)), ()
    if op3 == 0x3A:
        return _tcc(word, r, a, b, imm), ()
    if op3 in _PRIVILEGED:
        raise Unimplemented(f"privileged {_PRIVILEGED[op3]}")
    if op3 in (0x34, 0x35):
        raise Unimplemented("floating-point operate")
    if op3 in (0x36, 0x37):
        raise Unimplemented("implementation-dependent (VIS)")
    raise Unimplemented("reserved or illegal opcode")


def _then_next(action: Callable[[], None]) -> Op:
    def f(npc: int) -> int:
        action()
        return npc + 4
    return f


def _jump(r: list[int], pc: int, a: int, b: int, d: int, imm: bool,
          restore: Callable[[], None] | None) -> Op:
    """jmpl (rd = pc) or return (restore the caller's window, no rd)."""
    def target() -> int:
        t = (r[a] + (b if imm else r[b])) & M64
        if t & 3:
            raise GuestTrap("fault", f"jump to misaligned address {t:#x}")
        return t

    if restore is not None:
        def ret(npc: int) -> int:
            t = target()
            restore()
            return t
        return ret
    if imm:
        def jmpl_i(npc: int) -> int:
            t = (r[a] + b) & M64
            if t & 3:
                raise GuestTrap("fault", f"jump to misaligned address {t:#x}")
            r[d] = pc
            return t
        return jmpl_i

    def jmpl(npc: int) -> int:
        t = target()
        r[d] = pc
        return t
    return jmpl


def _window(r: list[int], a: int, b: int, d: int, imm: bool, move: Callable[[], None]) -> Op:
    """save/restore: the sum is computed in the old window and written in the new one."""
    def f(npc: int) -> int:
        v = (r[a] + (b if imm else r[b])) & M64
        move()
        r[d] = v
        return npc + 4
    return f


def _trap(r: list[int], a: int, b: int, imm: bool) -> Op:
    def f(npc: int) -> int:
        number = (r[a] + (b if imm else r[b])) & 0x7F
        raise GuestTrap("fault", f"software trap {number:#x} (ta: system call or debugger trap, "
                                 "not emulated)")
    return f


def _tcc(word: int, r: list[int], a: int, b: int, imm: bool) -> Op:
    """Tcc with its condition: a trap that is not taken is a nop."""
    cond, cc = (word >> 25) & 15, (word >> 11) & 3
    if cc & 1:
        raise Unimplemented("Tcc on a reserved condition-code field")
    table, shift = ops.COND_TABLES[cond], 4 if cc == 2 else 0
    trap = _trap(r, a, b, imm)

    def f(npc: int) -> int:
        if table[(r[CCR] >> shift) & 15]:
            return trap(npc)
        return npc + 4
    return f


# -- op = 3: loads and stores -------------------------------------------------------------

def _memory(word: int, cpu: Cpu) -> Decoded:
    r, mem = cpu.r, cpu.mem
    rd, a, b, imm, op3 = _fields(word)
    d = rd or G0_SINK
    out = (rd,) if rd else ()
    if op3 in mem_ops.LOADS:
        return mem_ops.load(op3, r, mem, a, b, d, imm), out
    if op3 in mem_ops.STORES:
        return mem_ops.store(op3, r, mem, a, b, rd, imm), ()
    if op3 in (0x2D, 0x3D):                                 # prefetch(a): a hint
        return (lambda npc: npc + 4), ()
    if 0x10 <= op3 < 0x20 and op3 & 0xF in mem_ops.LOADS:
        return mem_ops.load_alt(op3, r, mem, word, a, b, d, imm), out
    if 0x10 <= op3 < 0x20 and op3 & 0xF in mem_ops.STORES:
        return mem_ops.store_alt(op3, r, mem, word, a, b, rd, imm), ()
    f = mem_ops.special(op3, r, mem, word, a, b, rd, imm)
    if f is not None:
        pair = (rd, rd + 1) if op3 & 0xF == 0x03 and op3 < 0x20 else (rd,)
        writes = () if op3 & 0xF == 0x07 and op3 < 0x20 else tuple(x for x in pair if x)
        return f, writes
    if op3 >= 0x20:
        raise Unimplemented("floating-point load/store")
    raise Unimplemented("reserved or illegal load/store opcode")
