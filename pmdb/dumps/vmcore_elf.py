"""ELF vmcores (kdump's /proc/vmcore, QEMU's dump-guest-memory) seen as physical memory.

The ELF header and notes are parsed by pmdb.dumps.elf (the user-core reader);
its program headers drop p_paddr, which is the one address that matters here,
so this module reads the program header table itself. PT_LOAD segments are
placed by p_paddr; only when every p_paddr is 0 (some old dumpers) by p_vaddr.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from pmdb.arch import Arch, by_elf_machine
from pmdb.dumps.base import Dump, FileSource, Note
from pmdb.dumps.elf import PT_LOAD, PT_NOTE, ElfHeader, ProgramHeader, parse_header, parse_notes
from pmdb.errors import FormatError
from pmdb.memory.space import ZEROS, Segment, SegmentedSpace

MAX_NOTES_SIZE = 64 << 20


@dataclass(frozen=True)
class LoadSegment:
    """A PT_LOAD of a vmcore: both addresses kept, since which one counts depends on the dumper."""

    paddr: int
    vaddr: int
    offset: int
    filesz: int
    memsz: int


def parse_loads(src: FileSource, hdr: ElfHeader) -> tuple[list[LoadSegment], list[ProgramHeader]]:
    """PT_LOAD segments (with p_paddr) and PT_NOTE headers, from e_phoff (QEMU puts it at 192)."""
    fmt = hdr.endian + ("IIIIIIII" if hdr.bits == 32 else "IIQQQQQQ")
    n = struct.calcsize(fmt)
    loads: list[LoadSegment] = []
    notes: list[ProgramHeader] = []
    for i in range(hdr.phnum):
        raw = src.read_at(hdr.phoff + i * hdr.phentsize, n)
        if hdr.bits == 32:
            ptype, off, vaddr, paddr, filesz, memsz, flags, _al = struct.unpack(fmt, raw)
        else:
            ptype, flags, off, vaddr, paddr, filesz, memsz, _al = struct.unpack(fmt, raw)
        if ptype == PT_LOAD:
            loads.append(LoadSegment(paddr, vaddr, off, filesz, memsz))
        elif ptype == PT_NOTE:
            notes.append(ProgramHeader(ptype, flags, off, vaddr, filesz, memsz))
    return loads, notes


class PhysicalSpace(SegmentedSpace):
    """A SegmentedSpace whose reads inside one segment go straight to the file."""

    def read(self, addr: int, n: int) -> bytes:
        seg = self.segment_at(addr) if n > 0 else None
        if seg is not None and addr + n <= seg.end:
            return seg.source.read_at(seg.offset + addr - seg.start, n)
        return super().read(addr, n)


class VmcoreElf(Dump):
    """An ELF vmcore: physical memory from PT_LOAD, CPU registers and VMCOREINFO from notes."""

    kind = "vmcore"

    def __init__(self, path: str, source: FileSource | None = None) -> None:
        self.path = path
        self.src = source or FileSource(path)
        self.header = parse_header(self.src)
        self.arch: Arch = by_elf_machine(self.header.machine, self.header.bits)
        self.loads, note_hdrs = parse_loads(self.src, self.header)
        self.notes = self._notes(note_hdrs)
        self.vmcoreinfo = next((n.desc.decode("latin-1").rstrip("\0") for n in self.notes
                                if n.name == "VMCOREINFO"), "")
        self.by_paddr = any(ld.paddr for ld in self.loads) or not any(ld.vaddr for ld in self.loads)
        self.truncated = any(ld.offset + ld.filesz > self.src.size for ld in self.loads)
        self._space: PhysicalSpace | None = None

    def _notes(self, note_hdrs: list[ProgramHeader]) -> list[Note]:
        notes: list[Note] = []
        for ph in note_hdrs:
            if ph.filesz > MAX_NOTES_SIZE or ph.offset + ph.filesz > self.src.size:
                raise FormatError(f"{os.path.basename(self.path)}: truncated or corrupt vmcore: notes of "
                                  f"{ph.filesz:#x} bytes at {ph.offset:#x} do not fit in the file "
                                  f"({self.src.size:#x} bytes)")
            notes.extend(parse_notes(self.src, ph, self.header.endian))
        return notes

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

    def _segments_of(self, ld: LoadSegment) -> list[Segment]:
        """File bytes, then zeros to p_memsz; a segment cut off by truncation is kept up to EOF."""
        base = ld.paddr if self.by_paddr else ld.vaddr
        have = max(0, min(ld.filesz, self.src.size - ld.offset))
        segs = [Segment(base, have, self.src, ld.offset)] if have else []
        if ld.filesz <= have and ld.memsz > ld.filesz:
            segs.append(Segment(base + ld.filesz, ld.memsz - ld.filesz, ZEROS))
        return segs

    def close(self) -> None:
        self.src.close()
