"""NT_PRSTATUS: a thread's or CPU's registers as the kernel writes them in core and crash notes.

The layout is the kernel's ``struct elf_prstatus``: ``elf_siginfo`` (signo, code,
errno), cursig, sigpend/sighold (words), pid/ppid/pgrp/sid, four timevals, then
``pr_reg``, each CPU's ``elf_gregset_t`` in the order its ``Arch.prstatus_regs``
names. User cores and kernel dumps (kdump's crash_notes) share it, which is why
it lives with the CPU descriptions rather than in either OS model. A short note
decodes as far as it goes; a missing register is simply absent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pmdb.arch import Arch

NT_PRSTATUS = 1


@dataclass
class PrStatus:
    """One NT_PRSTATUS note: the thread's pid, signal and general registers."""

    signo: int
    code: int
    cursig: int
    pid: int
    ppid: int
    pgrp: int
    sid: int
    registers: dict[str, int] = field(default_factory=dict)
    sigpend: int = 0          # the thread's own pending signals (bit n-1 for signal n)


def decode_prstatus(desc: bytes, arch: Arch) -> PrStatus:
    """One NT_PRSTATUS descriptor, in ``arch``'s word size, byte order and pr_reg order."""
    e, w = ("<" if arch.byteorder == "little" else ">"), arch.ptr_size
    hdr = desc.ljust(12 + 4 + 2 * w + 16, b"\0")
    signo, code, _errno, cursig = struct.unpack_from(e + "iiih", hdr, 0)
    sigpend, = struct.unpack_from(e + ("I" if w == 4 else "Q"), hdr, 16)
    pid, ppid, pgrp, sid = struct.unpack_from(e + "iiii", hdr, 16 + 2 * w)
    reg_at = 16 + 2 * w + 16 + 8 * w   # then four struct timevals of two words each
    regs: dict[str, int] = {}
    fmt = e + ("I" if w == 4 else "Q")
    for i, name in enumerate(arch.prstatus_regs):
        at = reg_at + i * w
        if at + w > len(desc):
            break
        regs[name] = struct.unpack_from(fmt, desc, at)[0]
    return PrStatus(signo, code, cursig, pid, ppid, pgrp, sid, regs, sigpend)
