"""Unwinding without CFI: the x86 frame-pointer chain and SPARC register windows.

Both trust nothing they read: a step is taken only when the new frame is
readable, aligned and further up the stack than the old one, so a damaged
stack ends the walk instead of sending it in circles.
"""

from __future__ import annotations

from pmdb.arch import Arch
from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace


class StepFailed(Exception):
    """A step could not be taken; the message says why (it becomes Frame.note)."""

    cfa: int | None = None


def fp_step(regs: dict[str, int], arch: Arch, memory: AddressSpace) -> dict[str, int]:
    """The caller's registers from the callee's, by the saved frame pointer chain."""
    if arch.name == "sparc64":
        return window_step(regs, arch, memory)
    if arch.fp is None:
        raise StepFailed("no frame pointer on this architecture")
    ptr = arch.ptr_size
    fp, sp = regs.get(arch.fp, 0), regs.get(arch.sp, 0)
    if fp == 0:
        raise StepFailed("end of the frame-pointer chain")
    if fp % ptr or fp < sp:
        raise StepFailed(f"frame pointer {fp:#x} is not a frame on this stack")
    try:
        saved_fp = memory.ptr(fp)
        ret = memory.ptr(fp + ptr)
    except FaultError as err:
        raise StepFailed(f"frame pointer {fp:#x} unreadable ({err.reason})") from None
    if saved_fp and saved_fp <= fp:
        # the chain must climb the stack; otherwise the next step would loop
        raise StepFailed(f"frame pointer chain goes down at {fp:#x}")
    caller = {k: v for k, v in regs.items() if k in _CALLEE_SAVED.get(arch.name, ())}
    caller[arch.fp] = saved_fp
    caller[arch.sp] = fp + 2 * ptr
    caller[arch.pc] = ret
    return caller


def window_step(regs: dict[str, int], arch: Arch, memory: AddressSpace) -> dict[str, int]:
    """SPARC: the caller's window is spilled at our %fp + bias; its %o are our %i."""
    fp = regs.get("i6", 0)
    if fp == 0:
        raise StepFailed("end of the register-window chain (%fp is 0)")
    base = fp + arch.stack_bias
    if base % 8 or fp <= regs.get("o6", 0):
        raise StepFailed(f"%fp {fp:#x} is not a frame above %sp")
    try:
        saved = memory.unpack("16Q", base)
    except FaultError as err:
        raise StepFailed(f"window save area at {base:#x} unreadable ({err.reason})") from None
    caller = {f"g{i}": regs[f"g{i}"] for i in range(8) if f"g{i}" in regs}
    for i in range(8):
        caller[f"o{i}"] = regs.get(f"i{i}", 0)
        caller[f"l{i}"] = saved[i]
        caller[f"i{i}"] = saved[8 + i]
    caller["pc"] = regs.get("i7", 0) + 8   # a call's return lands after it and its delay slot
    return caller


# Registers a callee preserves: without CFI saying otherwise, they keep their values.
_CALLEE_SAVED: dict[str, tuple[str, ...]] = {
    "x86_64": ("rbx", "rbp", "r12", "r13", "r14", "r15", "fs_base", "gs_base"),
    "i386": ("ebx", "esi", "edi", "ebp", "gs"),
    "aarch64": tuple(f"x{i}" for i in range(19, 30)),
}


def callee_saved(arch: Arch) -> tuple[str, ...]:
    return _CALLEE_SAVED.get(arch.name, ())
