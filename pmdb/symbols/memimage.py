"""ELF images that exist only in a process's memory: the vDSO.

The kernel maps the vDSO (``linux-vdso.so.1``, i386's ``linux-gate.so.1``) into every
process and records its address as AT_SYSINFO_EHDR; no file on disk holds it, but a
core keeps its pages. On i386 every thread blocked in a system call stops inside its
``__kernel_vsyscall``, so its symbols and CFI come from those pages.
"""

from __future__ import annotations

import io
import struct

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.objfile import ObjectFile

_ELF_ERRORS = (ELFError, struct.error, ValueError, KeyError, AssertionError, StopIteration)
_MAX_IMAGE = 1 << 20       # a vDSO is a few pages; a bigger "image" is a misread header


def image_bytes(space: AddressSpace, base: int) -> bytes | None:
    """The bytes of the ELF image whose header is at base, up to its section headers
    (which the vDSO maps with the rest); None when base holds no such image."""
    try:
        head = ELFFile(io.BytesIO(space.read(base, 64)))
        size = head["e_shoff"] + head["e_shnum"] * head["e_shentsize"]
        if not 0 < size <= _MAX_IMAGE:
            return None
        return space.read(base, size)
    except (FaultError, *_ELF_ERRORS):
        return None


def image_object(space: AddressSpace, base: int, name: str = "") -> ObjectFile | None:
    """An ObjectFile over the in-memory image at base, named by its DT_SONAME unless a
    name is given; None when there is no readable ELF image there."""
    data = image_bytes(space, base)
    if data is None:
        return None
    try:
        elf = ELFFile(io.BytesIO(data))
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        first = loads[0]
        bias = base - (first["p_vaddr"] - first["p_offset"])
        end = max(s["p_vaddr"] + s["p_memsz"] for s in loads) + bias
        soname = name or _soname(elf) or "[vdso]"
    except (IndexError, *_ELF_ERRORS):
        return None
    return ObjectFile(soname, bias=bias, start=base, end=end, name=soname, image=data)


def _soname(elf: ELFFile) -> str | None:
    dyn = elf.get_section_by_name(".dynamic")
    for tag in getattr(dyn, "iter_tags", lambda: [])():
        if tag.entry.d_tag == "DT_SONAME":
            return str(tag.soname)
    return None
