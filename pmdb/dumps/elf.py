"""ELF core files: program headers, notes and the virtual address space they describe.

``read_elf`` parses a core's header, program headers and notes once; detection
(pmdb.dumps.detect) looks at the notes and hands the result to ElfCore (a user
process) or VmcoreElf (a kernel). Everything comes from the file through mmap and is bounds-checked against the
file size before use, so a truncated or corrupt core gives one FormatError
instead of a hang or a huge allocation. Segments the kernel left out of the
core (file-backed text: a PT_LOAD with p_filesz < p_memsz) are served from the
file named in NT_FILE, found lazily by a ``locate`` callable the opener sets.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pmdb.arch import Arch, by_elf_machine
from pmdb.dumps.base import Dump, FileSource, Note
from pmdb.errors import FaultError, FormatError
from pmdb.memory.space import ZEROS, Segment, SegmentedSpace

ELF_MAGIC = b"\x7fELF"
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF

NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494C45

MAX_NOTES = 100_000          # a real core has a few per thread; more means corruption
MAX_NOTE_BYTES = 256 << 20  # notes of ~100k threads; beyond that a p_filesz is damaged
MAX_PHDRS = 1 << 20
MAX_FILE_ENTRIES = 1 << 20

ET_NAMES = {0: "ET_NONE", 1: "a relocatable object (ET_REL)", 2: "an executable (ET_EXEC)",
            3: "a shared object (ET_DYN)"}


@dataclass(frozen=True)
class ElfHeader:
    """The ELF header fields pmdb reads."""

    bits: int
    byteorder: str
    type: int
    machine: int
    phoff: int
    phentsize: int
    phnum: int

    @property
    def endian(self) -> str:
        return "<" if self.byteorder == "little" else ">"


@dataclass(frozen=True)
class ProgramHeader:
    """One ELF program header (a PT_LOAD segment or a PT_NOTE)."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    paddr: int = 0            # only vmcores give it meaning

    @property
    def perms(self) -> str:
        f = self.flags
        return ("r" if f & PF_R else "-") + ("w" if f & PF_W else "-") + ("x" if f & PF_X else "-")


@dataclass(frozen=True)
class FileMapping:
    """One NT_FILE entry: [start, end) maps ``path`` from byte ``offset``."""

    start: int
    end: int
    offset: int
    path: str


def parse_header(src: FileSource) -> ElfHeader:
    """The ELF header, checked: FormatError for anything that cannot be a core."""
    name = os.path.basename(src.path)
    if src.size < 4 or src.read_at(0, 4) != ELF_MAGIC:
        raise FormatError(f"{name}: not an ELF file")
    if src.size < 16:
        raise FormatError(f"{name}: truncated ELF header ({src.size} bytes)")
    ident = src.read_at(0, 16)
    if ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise FormatError(f"{name}: corrupt ELF header (class {ident[4]}, data {ident[5]})")
    bits = 32 if ident[4] == 1 else 64
    byteorder = "little" if ident[5] == 1 else "big"
    e = "<" if byteorder == "little" else ">"
    fmt = e + ("HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH")
    size = 16 + struct.calcsize(fmt)
    if src.size < size:
        raise FormatError(f"{name}: truncated ELF header ({src.size} bytes)")
    (etype, machine, _v, _entry, phoff, shoff, _fl, _ehsz, phentsize, phnum, shentsize, _shnum,
     _shstr) = struct.unpack(fmt, src.read_at(16, size - 16))
    if etype != ET_CORE:
        what = ET_NAMES.get(etype, f"ELF type {etype}")
        raise FormatError(f"{name}: not a core file: it is {what}")
    if phnum == PN_XNUM:
        phnum = _extended_phnum(src, e, bits, shoff, shentsize)
    want = 32 if bits == 32 else 56
    if phentsize < want:
        raise FormatError(f"{name}: corrupt ELF header (program header size {phentsize})")
    if phoff % 4:  # every ELF writer aligns the table; an odd offset is a damaged field
        raise FormatError(f"{name}: corrupt ELF header (program headers at odd offset {phoff:#x})")
    if phnum == 0 or phnum > MAX_PHDRS or phoff + phnum * phentsize > src.size:
        raise FormatError(f"{name}: truncated or corrupt core: {phnum} program headers at "
                          f"{phoff:#x} do not fit in the file ({src.size} bytes)")
    return ElfHeader(bits, byteorder, etype, machine, phoff, phentsize, phnum)


def _extended_phnum(src: FileSource, e: str, bits: int, shoff: int, shentsize: int) -> int:
    """More than 0xfffe segments: the real count is section 0's sh_info."""
    info_at = shoff + (28 if bits == 32 else 44)
    if shentsize == 0 or info_at + 4 > src.size:
        raise FormatError(f"{os.path.basename(src.path)}: corrupt ELF header (extended phnum)")
    return int(struct.unpack(e + "I", src.read_at(info_at, 4))[0])


def read_phdrs(src: FileSource, hdr: ElfHeader) -> list[ProgramHeader]:
    """Every program header as written, from e_phoff (QEMU puts it after section headers)."""
    fmt = hdr.endian + ("IIIIIIII" if hdr.bits == 32 else "IIQQQQQQ")
    n = struct.calcsize(fmt)
    out: list[ProgramHeader] = []
    for i in range(hdr.phnum):
        raw = src.read_at(hdr.phoff + i * hdr.phentsize, n)
        if hdr.bits == 32:
            ptype, off, vaddr, paddr, filesz, memsz, flags, _al = struct.unpack(fmt, raw)
        else:
            ptype, flags, off, vaddr, paddr, filesz, memsz, _al = struct.unpack(fmt, raw)
        out.append(ProgramHeader(ptype, flags, off, vaddr, filesz, memsz, paddr))
    return out


@dataclass(frozen=True)
class ElfImage:
    """An ELF core as read once: header, program headers as written, and the notes."""

    src: FileSource
    header: ElfHeader
    phdrs: list[ProgramHeader]
    notes: list[Note]                        # of every PT_NOTE segment that lies inside the file
    note_error: FormatError | None = None    # corrupt notes: each reader raises it in its own order

    @property
    def note_owners(self) -> set[str]:
        return {n.name for n in self.notes}

    def arch(self) -> Arch:
        """The CPU of e_machine; FormatError naming the file for one pmdb does not know."""
        try:
            return by_elf_machine(self.header.machine, self.header.bits)
        except FormatError as err:
            raise FormatError(f"{os.path.basename(self.src.path)}: {err}") from None


def read_elf(src: FileSource) -> ElfImage:
    """The header (checked: FormatError when it cannot be a core), program headers and notes."""
    header = parse_header(src)
    phdrs = read_phdrs(src, header)
    try:
        notes = [n for ph in phdrs if ph.type == PT_NOTE and ph.offset + ph.filesz <= src.size
                 for n in parse_notes(src, ph, header.endian)]
    except FormatError as err:
        return ElfImage(src, header, phdrs, [], err)
    return ElfImage(src, header, phdrs, notes)


def check_user_phdrs(src: FileSource, hdr: ElfHeader, out: list[ProgramHeader]) -> list[ProgramHeader]:
    """The program headers of a user core, which must hold all its segments' bytes."""
    name = os.path.basename(src.path)
    for ph in out:
        if ph.type in (PT_LOAD, PT_NOTE) and ph.offset + ph.filesz > src.size:
            what = "the notes end" if ph.type == PT_NOTE else f"the segment at {ph.vaddr:#x} ends"
            raise FormatError(f"{name}: truncated core: {what} at file offset {ph.offset + ph.filesz:#x} "
                              f"but the file has only {src.size:#x} bytes")
    if not any(ph.type in (PT_LOAD, PT_NOTE) for ph in out):
        raise FormatError(f"{name}: corrupt core: no PT_LOAD or PT_NOTE among {hdr.phnum} program headers")
    return out


def parse_notes(src: FileSource, ph: ProgramHeader, endian: str) -> list[Note]:
    """The notes of one PT_NOTE segment; every size checked against the segment. Each note
    is read on its own, never the whole segment: a damaged p_filesz costs what the notes
    that do parse hold, not the size it claims (a 256 MB claim once cost 666 MB)."""
    name = os.path.basename(src.path)
    if ph.filesz > MAX_NOTE_BYTES:
        raise FormatError(f"{name}: corrupt core: a note segment of {ph.filesz:#x} bytes")
    size = ph.filesz
    notes: list[Note] = []
    pos = 0
    while pos + 12 <= size:
        namesz, descsz, ntype = struct.unpack(endian + "III", src.read_at(ph.offset + pos, 12))
        name_at = pos + 12
        desc_at = name_at + _align4(namesz)
        end = desc_at + _align4(descsz)
        if desc_at + descsz > size:
            raise FormatError(f"{name}: corrupt note at {ph.offset + pos:#x}: sizes "
                              f"{namesz}/{descsz} run past its segment")
        owner = src.read_at(ph.offset + name_at, namesz).split(b"\0", 1)[0].decode("latin-1")
        notes.append(Note(owner, ntype, src.read_at(ph.offset + desc_at, descsz)))
        if len(notes) > MAX_NOTES:
            raise FormatError(f"{name}: corrupt notes: more than {MAX_NOTES}")
        pos = end
    return notes


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_nt_file(desc: bytes, bits: int, endian: str) -> list[FileMapping]:
    """NT_FILE: count, page size, count x (start, end, page offset), then the paths."""
    w = "I" if bits == 32 else "Q"
    ws = bits // 8
    if len(desc) < 2 * ws:
        raise FormatError("corrupt NT_FILE note (too short)")
    count, page = struct.unpack_from(endian + w * 2, desc, 0)
    names_at = 2 * ws + count * 3 * ws
    if count > MAX_FILE_ENTRIES or names_at > len(desc):
        raise FormatError(f"corrupt NT_FILE note ({count} entries in {len(desc)} bytes)")
    names = desc[names_at:].split(b"\0")
    out = []
    for i in range(count):
        start, end, pgoff = struct.unpack_from(endian + w * 3, desc, 2 * ws + i * 3 * ws)
        path = names[i].decode("utf-8", "replace") if i < len(names) else ""
        out.append(FileMapping(start, end, pgoff * page, path))
    return out


Locator = Callable[[str], "str | None"]


class MappedFile:
    """A file the core maps but left out; found on first read, then read through mmap.

    Addresses (not file offsets) come in, so a fault names the virtual address.
    Bytes past the file's end read as zeros, as the kernel maps them.
    """

    def __init__(self, fm: FileMapping, resolver: Callable[[str], FileSource | None]) -> None:
        self.fm = fm
        self._resolve = resolver

    def read_at(self, addr: int, n: int) -> bytes:
        src = self._resolve(self.fm.path)
        if src is None:
            raise FaultError(addr, n, f"not in the core; mapped from {os.path.basename(self.fm.path)} "
                                      "which was not found")
        off = self.fm.offset + (addr - self.fm.start)
        have = max(0, min(n, src.size - off))
        data = src.read_at(off, have) if have else b""
        return data + bytes(n - have)


class ElfDump(Dump):
    """A dump read from an ELF core: the file, its header and CPU, parsed once (ElfImage)."""

    def __init__(self, path: str, image: ElfImage | None = None) -> None:
        image = image if image is not None else read_elf(FileSource(path))
        self.path = path
        self.src = image.src
        self.header = image.header
        self.arch: Arch = image.arch()
        self.image = image


class ElfCore(ElfDump):
    """An ELF ET_CORE file of a user process (any of the supported CPUs)."""

    kind = "user-core"

    def __init__(self, path: str, image: ElfImage | None = None) -> None:
        super().__init__(path, image)
        image = self.image
        self.phdrs = check_user_phdrs(self.src, self.header, image.phdrs)
        if image.note_error is not None:
            raise image.note_error
        self.notes = image.notes      # every PT_NOTE lies inside the file (checked just above)
        self.files = self._file_mappings()
        self.locate: Locator = self._default_locate
        self._opened: dict[str, FileSource | None] = {}
        self._resolving: set[str] = set()
        self._space: SegmentedSpace | None = None

    @property
    def loads(self) -> list[ProgramHeader]:
        return [ph for ph in self.phdrs if ph.type == PT_LOAD]

    def _file_mappings(self) -> list[FileMapping]:
        try:
            notes = self.notes_of(NT_FILE, "CORE")
            return parse_nt_file(notes[0].desc, self.header.bits, self.header.endian) if notes else []
        except (FormatError, struct.error) as err:
            raise FormatError(f"{os.path.basename(self.path)}: {err}") from None

    def _default_locate(self, recorded: str) -> str | None:
        """Without configuration: the recorded path, then the same name beside the core."""
        beside = os.path.join(os.path.dirname(os.path.abspath(self.path)), os.path.basename(recorded))
        for cand in (recorded, beside):
            if cand and os.path.isfile(cand):
                return cand
        return None

    def _open_mapped(self, recorded: str) -> FileSource | None:
        if recorded in self._opened:
            return self._opened[recorded]
        if recorded in self._resolving:  # a build-id check reading the file's own left-out page
            return None
        self._resolving.add(recorded)
        try:
            found = self.locate(recorded)
            src = FileSource(found) if found else None
        except FormatError:
            src = None
        finally:
            self._resolving.discard(recorded)
        self._opened[recorded] = src
        return src

    def found_file(self, recorded: str) -> str | None:
        """Where the file mapped from ``recorded`` was found (None: not found)."""
        src = self._open_mapped(recorded)
        return src.path if src else None

    def space(self) -> SegmentedSpace:
        if self._space is None:
            segs: list[Segment] = []
            for ph in self.loads:
                segs.extend(self._segments_of(ph))
            self._space = SegmentedSpace(segs, self.arch.byteorder, self.arch.ptr_size)
        return self._space

    def _segments_of(self, ph: ProgramHeader) -> list[Segment]:
        segs = []
        if ph.filesz:
            segs.append(Segment(ph.vaddr, min(ph.filesz, ph.memsz or ph.filesz), self.src, ph.offset))
        cur, end = ph.vaddr + ph.filesz, ph.vaddr + ph.memsz
        for fm in sorted(self.files, key=lambda f: f.start):
            lo, hi = max(cur, fm.start), min(end, fm.end)
            if lo >= hi:
                continue
            if lo > cur:
                segs.append(Segment(cur, lo - cur, ZEROS))
            segs.append(Segment(lo, hi - lo, MappedFile(fm, self._open_mapped), lo, name=fm.path))
            cur = hi
        if cur < end:
            segs.append(Segment(cur, end - cur, ZEROS))
        return segs

    def close(self) -> None:
        for src in self._opened.values():
            if src is not None:
                src.close()
        self._opened.clear()
        self.src.close()
