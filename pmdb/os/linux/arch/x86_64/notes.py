"""An x86-64 kernel dump's CPU registers from its notes: NT_PRSTATUS, else QEMU's own.

QEMU's dump-guest-memory writes each CPU twice, as NT_PRSTATUS and as its own
QEMUCPUState; a dump stripped of the first still has the second.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pmdb.arch import Arch
from pmdb.dumps.base import Note
from pmdb.os.linux.arch import CpuRegisters, prstatus_registers

# QEMUCPUState (QEMU's dump-guest-memory, x86-64, version 1): u32 version, u32 size, then
# these 64-bit registers in this order (target/i386/arch_dump.c)
_QEMU_X86_64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
                "r12", "r13", "r14", "r15", "rip", "eflags")


def note_registers(notes: Sequence[Note], arch: Arch) -> CpuRegisters:
    """Each CPU's registers, in CPU order: the NT_PRSTATUS notes, else QEMU's."""
    return prstatus_registers(notes, arch) or qemu_registers(notes, arch)


def qemu_registers(notes: Sequence[Note], arch: Arch) -> CpuRegisters:
    """Registers from QEMU's own per-CPU notes (owner "QEMU"), in CPU order."""
    if arch.name != "x86_64":
        return []
    out: CpuRegisters = []
    for note in notes:
        if note.name != "QEMU" or len(note.desc) < 8 + 8 * len(_QEMU_X86_64):
            continue
        version, _size = struct.unpack_from("<II", note.desc, 0)
        if version != 1:
            continue
        values = struct.unpack_from(f"<{len(_QEMU_X86_64)}Q", note.desc, 8)
        out.append((0, dict(zip(_QEMU_X86_64, values, strict=True))))
    return out
