"""Exception frames (struct pt_regs) found by searching a kernel stack, as crash's ``bt -e``
does (x86_64_eframe_search / x86_64_eframe_verify in crash's x86_64.c).

The unwinder finds the pt_regs on its path; a search finds every one left on the stack,
stale ones too, which is what a reader wants when the unwind went wrong. A word is taken
as a pt_regs base when its CS/SS are the kernel's or user's selectors, its RFLAGS has the
always-one bit set and no reserved bit, and RIP/RSP are addresses of the right side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .unwind import PT_REGS

KERNEL_CS, KERNEL_SS = 0x10, 0x18          # __KERNEL_CS, __KERNEL_DS
USER_CS, USER_SS = 0x33, 0x2B              # __USER_CS, __USER_DS
RFLAGS_RESERVED = 0xFFFFFFFFFFC08028       # bits 3, 5, 15 and 22..63 read as zero (crash's RAZ_MASK)
USER_TOP = 1 << 47
PT_REGS_SIZE = 8 * len(PT_REGS)


@dataclass(frozen=True)
class ExceptionFrame:
    """One pt_regs found on a stack: where it is, whose mode it saved, its registers."""

    address: int
    user: bool
    regs: dict[str, int]


def search_eframes(words: Sequence[int], base: int,
                   is_text: Callable[[int], bool]) -> list[ExceptionFrame]:
    """Every pt_regs among ``words`` (a stack read from ``base``), lowest address first.
    ``is_text``: whether an address is kernel or module code (a kernel frame's RIP)."""
    found = []
    for i in range(len(words) - len(PT_REGS) + 1):
        regs = dict(zip(PT_REGS, words[i:i + len(PT_REGS)], strict=True))
        addr = base + 8 * i
        kind = _mode(regs, addr, is_text)
        if kind is not None:
            found.append(ExceptionFrame(addr, kind == "user", regs))
    return found


def _mode(regs: dict[str, int], addr: int, is_text: Callable[[int], bool]) -> str | None:
    """"kernel", "user" or None: what crash's x86_64_eframe_verify would say of this base."""
    flags = regs["eflags"]
    if flags & RFLAGS_RESERVED or not flags & 0x2:
        return None
    rip, rsp, cs, ss = regs["rip"], regs["rsp"], regs["cs"], regs["ss"]
    if cs == USER_CS and ss == USER_SS:
        return "user" if rip < USER_TOP and rsp < USER_TOP else None
    if cs != KERNEL_CS or not rsp >> 63 or not is_text(rip):
        return None
    # an interrupted kernel: its own SS, or the stack it left just above this pt_regs
    if ss == KERNEL_SS or rsp in (addr + PT_REGS_SIZE, addr + PT_REGS_SIZE + 8):
        return "kernel"
    return None
