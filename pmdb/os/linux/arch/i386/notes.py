"""An i386 kernel dump's CPU registers from its ELF32 NT_PRSTATUS notes.

kexec's crash notes and QEMU's dump-guest-memory both write the i386
``elf_gregset_t`` (ebx ecx edx esi edi ebp eax ds es fs gs orig_eax eip cs
eflags esp ss). QEMU writes the live CPU state. The kernel's own notes come
from crash_setup_regs(): for a CPU that trapped in kernel mode the CPU pushed
no esp/ss, and since 5.3 the 32-bit entry code completes pt_regs so esp is
the interrupted stack pointer either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from pmdb.arch import Arch
from pmdb.dumps.base import Note
from pmdb.os.linux.arch import CpuRegisters, prstatus_registers


def note_registers(notes: Sequence[Note], arch: Arch) -> CpuRegisters:
    """Each CPU's registers, in CPU order."""
    return prstatus_registers(notes, arch)
