"""The arm64 frame-record unwinder on stacks laid out here as the kernel lays them out.

Real stacks are checked in tests/test_arm64_kernel.py against the guest's
/proc/PID/stack and console; these cover what a dump may not show: signed
return addresses, an EL1 exception's pt_regs in the chain, an EL0 entry that
ends it, a loop, a record off every stack.
"""

from __future__ import annotations

import struct

from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.os.linux.arch.aarch64.unwind import Arm64Unwinder
from pmdb.os.linux.stacks.regions import StackMap, StackRegion

LO = 0xFFFF800008000000
HI = LO + 0x4000
MASK = 0xFFFF000000000000                 # KERNELPACMASK with 48-bit VAs
STACKFRAME = 304
FUNCS = {0xFFFF800010001000: "leaf", 0xFFFF800010002000: "caller", 0xFFFF800010003000: "el1h_64_irq",
         0xFFFF800010004000: "interrupted", 0xFFFF800010005000: "outer", 0xFFFF800010006000: "el0t_64_sync"}


class Src:
    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.buf[offset:offset + n])


def _name(addr: int) -> str:
    base = max((a for a in FUNCS if a <= addr), default=None)
    return FUNCS[base] if base is not None and addr - base < 0x1000 else ""


def _unwinder(stack: bytearray) -> Arm64Unwinder:
    mem = SegmentedSpace([Segment(LO, HI - LO, Src(stack))])
    return Arm64Unwinder(mem, StackMap([StackRegion("task", LO, HI)]), None, HI - LO, MASK, STACKFRAME, _name)


def _put(stack: bytearray, addr: int, *words: int) -> None:
    struct.pack_into(f"<{len(words)}Q", stack, addr - LO, *words)


def _signed(addr: int) -> int:
    return (addr & ~MASK) | 0x1A37 << 48 | 1 << 55     # a PAC in the top bits, bit 55 kept


def test_records_through_an_el1_exception_to_an_el0_entry() -> None:
    stack = bytearray(HI - LO)
    r1, regs1, r3, regs2 = LO + 0x100, LO + 0x200, LO + 0x400, LO + 0x3000
    _put(stack, r1, regs1 + STACKFRAME, _signed(0xFFFF800010003010))     # leaf -> el1h_64_irq
    pt = [0] * 34
    pt[29], pt[31], pt[32], pt[33] = r3, LO + 0x3F0, 0xFFFF800010004020, 0x3C5   # x29 sp pc pstate(EL1h)
    _put(stack, regs1, *pt)
    _put(stack, regs1 + STACKFRAME, r3, 0xFFFF800010004020)
    _put(stack, r3, regs2 + STACKFRAME, _signed(0xFFFF800010006040))     # interrupted -> el0t_64_sync
    user = [0] * 34
    user[31], user[32], user[33] = 0x7FFFF000, 0x400123, 0x0             # EL0t
    _put(stack, regs2, *user)
    frames = _unwinder(stack).unwind_regs({"pc": 0xFFFF800010001008, "sp": LO + 0xF0, "x29": r1})
    assert [(f.method, f.pc) for f in frames] == [
        ("regs", 0xFFFF800010001008), ("fp", 0xFFFF800010003010), ("exception", 0xFFFF800010004020),
        ("fp", 0xFFFF800010006040), ("exception", 0x400123)]
    assert frames[2].exception is not None and frames[2].sp == LO + 0x3F0
    assert frames[-1].stack_name == "user" and not frames[-1].note
    assert frames[1].slot == r1 + 8


def test_a_kernel_threads_last_record_ends_the_walk() -> None:
    stack = bytearray(HI - LO)
    _put(stack, LO + 0x100, LO + 0x180, _signed(0xFFFF800010002010))
    _put(stack, LO + 0x180, 0, 0)
    frames = _unwinder(stack).unwind_regs({"pc": 0xFFFF800010001000, "sp": LO + 0x100, "x29": LO + 0x100})
    assert [f.pc for f in frames] == [0xFFFF800010001000, 0xFFFF800010002010]
    assert not frames[-1].note


def test_a_loop_and_a_wild_pointer_end_with_a_reason() -> None:
    stack = bytearray(HI - LO)
    _put(stack, LO + 0x100, LO + 0x80, 0xFFFF800010002010)
    frames = _unwinder(stack).unwind_regs({"pc": 0xFFFF800010001000, "sp": LO + 0x100, "x29": LO + 0x100})
    assert "wrong direction" in frames[-1].note
    _put(stack, LO + 0x100, 0xFFFF000012345670, 0xFFFF800010002010)
    frames = _unwinder(stack).unwind_regs({"pc": 0xFFFF800010001000, "sp": LO + 0x100, "x29": LO + 0x100})
    assert "on no known stack" in frames[-1].note and len(frames) == 2
