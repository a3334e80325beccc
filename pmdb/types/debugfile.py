"""A large debug ELF (a kernel's vmlinux) mapped read-only, never read whole.

pyelftools' ``ELFFile.get_dwarf_info`` copies every DWARF section into memory (for a
distribution vmlinux, ~400 MB). Here each section is a window on one ``mmap``, so a
query touches only the pages of the DIEs it parses; the kernel pages them in and out.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import IO, Any

from elftools.common.exceptions import ELFError
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo
from elftools.elf.elffile import ELFFile

from pmdb.errors import FormatError

_SHF_COMPRESSED = 0x800
_NT_GNU_BUILD_ID = 3
_DWARF_SECTIONS = ("info", "aranges", "abbrev", "frame", "str", "loc", "ranges", "line",
                   "pubtypes", "pubnames", "addr", "str_offsets", "line_str", "loclists",
                   "rnglists", "sup", "types")


class Window:
    """A file-like view of [start, start+size) of a mapping: what pyelftools' streams need."""

    def __init__(self, mm: mmap.mmap, start: int, size: int) -> None:
        self._mm, self._start, self._size, self._pos = mm, start, size, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        pos = min(max(self._pos, 0), self._size)
        stop = self._size if n < 0 else min(self._size, pos + n)
        self._pos = stop
        return self._mm[self._start + pos:self._start + stop]


class DebugFile:
    """An ELF file with DWARF, mapped: its sections, build-id and a lazy DWARFInfo."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 -- kept open with the mapping
        except OSError as err:
            raise FormatError(f"{path}: {err.strerror or err}") from None
        try:
            size = os.fstat(self._file.fileno()).st_size
            self.mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self.elf = ELFFile(self._file)
            self.sections = self._section_table(size)
        except (OSError, ValueError, ELFError, struct.error, AssertionError) as err:
            self.close()
            raise FormatError(f"{os.path.basename(path)}: not a readable ELF file ({err})") from None
        self.little = self.elf.little_endian
        self.ptr_size = self.elf.elfclass // 8
        self._dwarf: DWARFInfo | None = None

    def _section_table(self, file_size: int) -> dict[str, tuple[int, int]]:
        """name -> (file offset, size) of every section with contents inside the file."""
        out: dict[str, tuple[int, int]] = {}
        for sec in self.elf.iter_sections():
            off, size = sec["sh_offset"], sec["sh_size"]
            if sec["sh_type"] == "SHT_NOBITS" or off + size > file_size:
                continue
            if sec["sh_flags"] & _SHF_COMPRESSED and sec.name.startswith(".debug"):
                raise FormatError(f"{sec.name} is compressed (SHF_COMPRESSED): not supported")
            out[sec.name] = (off, size)
        return out

    def has_dwarf(self) -> bool:
        return ".debug_info" in self.sections and ".debug_abbrev" in self.sections

    def build_id(self) -> str:
        """The NT_GNU_BUILD_ID, as hex ("" when there is none)."""
        for name in (".notes", ".note.gnu.build-id", ".note"):
            if name in self.sections:
                found = _build_id_in_notes(self.mm, *self.sections[name], self.little)
                if found:
                    return found
        return ""

    def read(self, name: str, offset: int, size: int) -> bytes:
        """Bytes of a section (a vmlinux's .rodata, say), refusing what lies outside it."""
        start, length = self.sections[name]
        if offset < 0 or offset + size > length:
            raise FormatError(f"{name}: {size} bytes at {offset:#x} are outside the section")
        return self.mm[start + offset:start + offset + size]

    def dwarf(self) -> DWARFInfo:
        """pyelftools' DWARFInfo over windows of the mapping (no section is copied)."""
        if self._dwarf is None:
            descriptors: dict[str, Any] = {}
            for short in _DWARF_SECTIONS:
                where = self.sections.get(f".debug_{short}")
                descriptors[f"debug_{short}_sec"] = None if where is None else DebugSectionDescriptor(
                    Window(self.mm, *where), f".debug_{short}", None, where[1], 0)  # type: ignore[arg-type]
            config = DwarfConfig(little_endian=self.little, default_address_size=self.ptr_size,
                                 machine_arch=self.elf.get_machine_arch())
            abbrev = self.sections.get(".debug_abbrev")
            if abbrev is None:
                self._dwarf = DWARFInfo(config=config, eh_frame_sec=None, gnu_debugaltlink_sec=None,
                                        **descriptors)
            else:       # abbrev tables read without construct (dwarf_abbrev: ~10x faster)
                from pmdb.types.dwarf_abbrev import FastAbbrevDWARFInfo

                self._dwarf = FastAbbrevDWARFInfo((self.mm, *abbrev), config=config, eh_frame_sec=None,
                                                  gnu_debugaltlink_sec=None, **descriptors)
        return self._dwarf

    def reset_dwarf(self) -> None:
        """Forget the units parsed so far (after offsets that proved wrong)."""
        self._dwarf = None

    def close(self) -> None:
        mm = getattr(self, "mm", None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass            # a memoryview on it is still alive: the GC closes it later
        self._file.close()


def _build_id_in_notes(mm: mmap.mmap, start: int, size: int, little: bool) -> str:
    found = build_id_note(mm[start:start + min(size, 1 << 16)], "<" if little else ">")
    return found.hex() if found else ""


def build_id_note(data: bytes, end: str) -> bytes | None:
    """The GNU build-id among the ELF notes in ``data`` (``end``: "<" or ">"), or None."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(end + "III", data, pos)
        pos += 12
        name = data[pos:pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if ntype == _NT_GNU_BUILD_ID and name == b"GNU":
            return bytes(desc)
    return None
