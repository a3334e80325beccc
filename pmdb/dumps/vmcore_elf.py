"""ELF vmcores (kdump's /proc/vmcore, QEMU's dump-guest-memory) seen as physical memory.

The ELF header, program headers and notes are read once by pmdb.dumps.elf's
read_elf, shared with the user-core reader. PT_LOAD segments are placed by p_paddr; only when every
p_paddr is 0 (some old dumpers) by p_vaddr. Unlike a user core, a truncated
vmcore stays readable up to where it ends.
"""

from __future__ import annotations

import os

from pmdb.dumps.elf import PT_LOAD, PT_NOTE, ElfDump, ElfImage, ProgramHeader
from pmdb.errors import FormatError
from pmdb.memory.space import ZEROS, Segment, SegmentedSpace

MAX_NOTES_SIZE = 64 << 20


class PhysicalSpace(SegmentedSpace):
    """A SegmentedSpace whose reads inside one segment go straight to the file."""

    def read(self, addr: int, n: int) -> bytes:
        seg = self.segment_at(addr) if n > 0 else None
        if seg is not None and addr + n <= seg.end:
            return seg.source.read_at(seg.offset + addr - seg.start, n)
        return super().read(addr, n)


class VmcoreElf(ElfDump):
    """An ELF vmcore: physical memory from PT_LOAD, CPU registers and VMCOREINFO from notes."""

    kind = "vmcore"

    def __init__(self, path: str, image: ElfImage | None = None) -> None:
        super().__init__(path, image)
        image = self.image
        self.loads = [ph for ph in image.phdrs if ph.type == PT_LOAD]
        self._check_notes([ph for ph in image.phdrs if ph.type == PT_NOTE])
        if image.note_error is not None:
            raise image.note_error
        self.notes = image.notes
        self.vmcoreinfo = next((n.desc.decode("latin-1").rstrip("\0") for n in self.notes
                                if n.name == "VMCOREINFO"), "")
        self.by_paddr = any(ld.paddr for ld in self.loads) or not any(ld.vaddr for ld in self.loads)
        self.truncated = any(ld.offset + ld.filesz > self.src.size for ld in self.loads)
        self._space: PhysicalSpace | None = None

    def _check_notes(self, note_hdrs: list[ProgramHeader]) -> None:
        for ph in note_hdrs:
            if ph.filesz > MAX_NOTES_SIZE or ph.offset + ph.filesz > self.src.size:
                raise FormatError(f"{os.path.basename(self.path)}: truncated or corrupt vmcore: notes of "
                                  f"{ph.filesz:#x} bytes at {ph.offset:#x} do not fit in the file "
                                  f"({self.src.size:#x} bytes)")

    def ranges(self) -> list[tuple[int, int]]:
        """Physical [start, end) ranges the file describes."""
        return [(s.start, s.end) for s in self.space().segments]

    def space(self) -> PhysicalSpace:
        if self._space is None:
            segs: list[Segment] = []
            for ld in self.loads:
                segs.extend(self._segments_of(ld))
            reason = "physical address not in the dump"
            if self.truncated:
                reason += " (the file is truncated)"
            self._space = PhysicalSpace(segs, self.arch.byteorder, self.arch.ptr_size, hole_reason=reason)
        return self._space

    def _segments_of(self, ld: ProgramHeader) -> list[Segment]:
        """File bytes, then zeros to p_memsz; a segment cut off by truncation is kept up to EOF."""
        base = ld.paddr if self.by_paddr else ld.vaddr
        have = max(0, min(ld.filesz, self.src.size - ld.offset))
        segs = [Segment(base, have, self.src, ld.offset)] if have else []
        if ld.filesz <= have and ld.memsz > ld.filesz:
            segs.append(Segment(base + ld.filesz, ld.memsz - ld.filesz, ZEROS))
        return segs

    def close(self) -> None:
        self.src.close()
