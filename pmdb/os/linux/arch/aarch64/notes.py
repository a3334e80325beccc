"""An arm64 kernel dump's CPU registers: NT_PRSTATUS (x0..x30, sp, pc, pstate), one note a CPU."""

from __future__ import annotations

from collections.abc import Sequence

from pmdb.arch import Arch
from pmdb.dumps.base import Note
from pmdb.os.linux.arch import CpuRegisters, prstatus_registers


def note_registers(notes: Sequence[Note], arch: Arch) -> CpuRegisters:
    """Each CPU's registers, in CPU order."""
    return prstatus_registers(notes, arch)
