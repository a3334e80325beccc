"""Finding the files a core names, and checking them by GNU build-id.

A core records where each executable and library was mapped from; on another
machine (or after an upgrade) that path may hold nothing or the wrong file.
The build-id note, kept in the first page of each ELF mapping of a core,
tells the right file from a wrong one.
"""

from __future__ import annotations

import os
import struct
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
