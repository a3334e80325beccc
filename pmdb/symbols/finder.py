"""Finding the files a core names, and checking them by GNU build-id.

A core records where each executable and library was mapped from; on another
machine (or after an upgrade) that path may hold nothing or the wrong file.
The build-id note, kept in the first page of each ELF mapping of a core,
tells the right file from a wrong one.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace
from pmdb.types.debugfile import build_id_note

NT_GNU_BUILD_ID = 3
_PT_NOTE = 4
_MAX_NOTE = 0x1000   # a build-id note is tiny; a bigger PT_NOTE is not worth reading from memory


def build_id_of_file(path: str) -> bytes | None:
    """The NT_GNU_BUILD_ID of an ELF file, or None (no note, not ELF, unreadable)."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_NOTE":
                    continue
                for note in seg.iter_notes():  # type: ignore[attr-defined]
                    if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                        return bytes.fromhex(note["n_desc"])
    except (OSError, ELFError, ValueError, struct.error, KeyError, AssertionError):
        return None
    return None


def build_id_in_memory(space: AddressSpace, addr: int) -> bytes | None:
    """The build-id of the ELF whose header is mapped at addr, read from the dump.

    The note lies in the first (offset 0) segment, so its file offset is also its
    offset from addr.
    """
    try:
        ident = space.read(addr, 16)
        if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return None
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            phoff, = struct.unpack(end + "Q", space.read(addr + 0x20, 8))
            phentsize, phnum = struct.unpack(end + "HH", space.read(addr + 0x36, 4))
        else:
            phoff, = struct.unpack(end + "I", space.read(addr + 0x1C, 4))
            phentsize, phnum = struct.unpack(end + "HH", space.read(addr + 0x2A, 4))
        for i in range(min(phnum, 64)):
            ph = space.read(addr + phoff + i * phentsize, phentsize)
            if is64:
                p_type, _, p_offset, _, _, p_filesz = struct.unpack(end + "IIQQQQ", ph[:40])
            else:
                p_type, p_offset, _, _, p_filesz = struct.unpack(end + "IIIII", ph[:20])
            if p_type != _PT_NOTE or p_filesz > _MAX_NOTE:
                continue
            found = build_id_note(space.read(addr + p_offset, p_filesz), end)
            if found is not None:
                return found
    except (FaultError, struct.error):
        return None
    return None


def candidates(recorded: str, *, core_dir: str, search_path: Sequence[str] = (),
               sysroot: str = "") -> list[str]:
    """Where to look for a recorded file, in the order they are tried."""
    base = os.path.basename(recorded)
    out: list[str] = []
    if recorded:
        out.append(os.path.join(sysroot, recorded.lstrip("/")) if sysroot else recorded)
    if base:
        out.append(os.path.join(core_dir, base))
        out += [os.path.join(os.path.expanduser(d), base) for d in search_path]
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def find_file(recorded: str, *, core_dir: str, search_path: Sequence[str] = (), sysroot: str = "",
              expected_build_id: bytes | None = None, check_build_id: bool = True) -> str | None:
    """Recorded path (under sysroot if given), then beside the core (by basename), then each
    search-path dir (by basename); a candidate whose build-id differs from expected_build_id
    is skipped when check_build_id."""
    for path in candidates(recorded, core_dir=core_dir, search_path=search_path, sysroot=sysroot):
        if not os.path.isfile(path):
            continue
        if check_build_id and expected_build_id is not None:
            if build_id_of_file(path) != expected_build_id:
                continue
        return path
    return None


# -- separate debug files ----------------------------------------------------------------

def debuglink(elf: ELFFile) -> tuple[str, int] | None:
    """(file name, CRC-32) of an ELF's .gnu_debuglink section, or None."""
    try:
        sec = elf.get_section_by_name(".gnu_debuglink")
        if sec is None or sec["sh_type"] == "SHT_NOBITS":
            return None
        data = sec.data()
    except (ELFError, ValueError, OSError, struct.error, KeyError, AssertionError):
        return None
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3          # the name, its NUL, padding to 4, then the CRC
    if crc_at + 4 > len(data):
        return None
    (crc,) = struct.unpack_from("<I" if elf.little_endian else ">I", data, crc_at)
    return data[:end].decode("utf-8", "replace"), crc


def file_crc32(path: str) -> int | None:
    """The CRC-32 .gnu_debuglink records (zlib's polynomial), or None when unreadable."""
    crc = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return None
    return crc


def is_debug_only(path: str) -> bool:
    """A separate debug file (objcopy --only-keep-debug): its .text holds no bytes."""
    try:
        with open(path, "rb") as f:
            text = ELFFile(f).get_section_by_name(".text")
            return text is not None and text["sh_type"] == "SHT_NOBITS"
    except (OSError, ELFError, ValueError, struct.error, KeyError, AssertionError):
        return False


def debug_candidates(path: str, build_id: bytes | None, link: str | None,
                     directories: Sequence[str]) -> list[str]:
    """Where gdb looks for an object's debug file, in its order: each directory's
    .build-id/xx/rest.debug, then the debuglink name beside the object, in its .debug/, and
    under each directory at the object's own path (Debian's older -dbg layout)."""
    tops = [os.path.expanduser(d) for d in directories]
    out: list[str] = []
    if build_id and len(build_id) > 1:
        hexid = build_id.hex()
        out += [os.path.join(t, ".build-id", hexid[:2], f"{hexid[2:]}.debug") for t in tops]
    if link:
        link = os.path.basename(link)
        dirs = list(dict.fromkeys([os.path.dirname(path), os.path.dirname(os.path.realpath(path))]))
        for d in dirs:
            out += [os.path.join(d, link), os.path.join(d, ".debug", link)]
        for d in dirs:
            out += [os.path.join(t, d.lstrip("/"), link) for t in tops]
    return list(dict.fromkeys(p for p in out if os.path.abspath(p) != os.path.abspath(path)))


def matches_object(debug_path: str, build_id: bytes | None, link_crc: int | None) -> bool:
    """A debug file belongs to an object when their build-ids agree; an object without a
    build-id is matched by its debuglink's CRC of the whole file."""
    if build_id:
        return build_id_of_file(debug_path) == build_id
    return link_crc is not None and file_crc32(debug_path) == link_crc


def find_debug_file(path: str, elf: ELFFile, *, build_id: bytes | None, directories: Sequence[str],
                    named: Sequence[str] = ()) -> str | None:
    """The separate debug file of the object at path: one of ``named`` (-s files) first, then
    the search of debug_candidates; each must match the object (matches_object)."""
    link = debuglink(elf)
    crc = link[1] if link else None
    if build_id is None and link is None:
        return None
    for cand in [*named, *debug_candidates(path, build_id, link[0] if link else None, directories)]:
        if os.path.isfile(cand) and matches_object(cand, build_id, crc):
            return cand
    return None
