"""Sniff a dump file's format from its first bytes and open the right reader.

FORMATS is the one table of what pmdb opens: magic bytes -> reader. ELF cores
are read once (pmdb.dumps.elf.read_elf) and handed to the vmcore or the
user-core reader by their notes. Every failure is one FormatError line naming
the file: missing, empty, an unknown format, an ELF that is not a core, a
truncated or corrupt header.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pmdb.cache import Cache
from pmdb.dumps import zst
from pmdb.dumps.base import Dump, FileSource
from pmdb.dumps.elf import ELF_MAGIC, NT_AUXV, NT_FILE, NT_PRPSINFO, PT_LOAD, ElfCore, ElfImage, read_elf
from pmdb.dumps.flattened import SIGNATURE as FLATTENED_SIGNATURE
from pmdb.dumps.flattened import FlattenedSource
from pmdb.dumps.kdump import DISKDUMP_SIGNATURE, KDUMP_SIGNATURE, KdumpFile
from pmdb.dumps.vmcore_elf import VmcoreElf
from pmdb.errors import FaultError, FormatError
from pmdb.progress import Progress

HEAD = 16                                 # bytes read to tell the formats apart
VMCORE_NOTE_OWNERS = ("VMCOREINFO", "QEMU")   # notes only a kernel's ELF core has
# what a field that escaped a bounds check raises while a header is read
_CORRUPT = (FaultError, struct.error, ValueError, OverflowError, MemoryError)

# (path, the file opened once, cache, progress) -> the Dump; it owns the source from then on
Reader = Callable[[str, FileSource, "Cache | None", "Progress | None"], Dump]


@dataclass(frozen=True)
class DumpFormat:
    """A dump format pmdb opens: its name, its magic and its reader."""

    name: str
    magic: bytes
    open: Reader


def _zstd(path: str, src: FileSource, cache: Cache | None, progress: Progress | None) -> Dump:
    """A .zst copy of any dump: decompressed into the cache once, then opened as what it holds."""
    src.close()
    dump = detect(zst.decompressed(path, cache, progress), cache, progress)
    if dump is None:
        raise FormatError(f"{_name(path)}: zstd-compressed, but not a dump pmdb knows inside")
    return dump


def _kdump(path: str, src: FileSource, cache: Cache | None, progress: Progress | None) -> Dump:
    return KdumpFile(src)


def _flattened(path: str, src: FileSource, cache: Cache | None, progress: Progress | None) -> Dump:
    return KdumpFile(FlattenedSource(path, src))


def _elf(path: str, src: FileSource, cache: Cache | None, progress: Progress | None) -> Dump:
    """An ELF core, read once: a kernel's when its notes hold VMCOREINFO or QEMU's CPU state."""
    image = read_elf(src)
    if image.note_owners.intersection(VMCORE_NOTE_OWNERS):
        return VmcoreElf(path, image)
    if _kernel_like(image):
        why = f" ({image.note_error})" if image.note_error is not None else ""
        raise FormatError(f"{_name(path)}: looks like a kernel dump (physical addresses, no process "
                          f"notes) but its VMCOREINFO note is missing or damaged{why}")
    return ElfCore(path, image)


def _kernel_like(image: ElfImage) -> bool:
    """An ELF core that is a vmcore whose telling notes are gone: its segments carry physical
    addresses (a process's never do) and it has none of the notes every process core has."""
    process_notes = {n.type for n in image.notes if n.name == "CORE"} & {NT_PRPSINFO, NT_AUXV, NT_FILE}
    return not process_notes and any(ph.type == PT_LOAD and ph.paddr for ph in image.phdrs)


# the first match wins
FORMATS: tuple[DumpFormat, ...] = (
    DumpFormat("zstd-compressed dump", zst.ZSTD_MAGIC, _zstd),
    DumpFormat("compressed kdump", KDUMP_SIGNATURE, _kdump),
    DumpFormat("diskdump", DISKDUMP_SIGNATURE, _kdump),
    DumpFormat("flattened makedumpfile dump", FLATTENED_SIGNATURE + bytes(4), _flattened),
    DumpFormat("ELF core", ELF_MAGIC, _elf),
)


def open_dump(path: str, cache: Cache | None = None, progress: Progress | None = None) -> Dump:
    """The Dump for ``path``, or FormatError with one line saying what is wrong.

    ``cache`` and ``progress`` serve compressed (``.zst``) dumps: see pmdb/dumps/zst.py."""
    if not os.path.exists(path):
        raise FormatError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FormatError(f"{path}: is a directory, not a dump file")
    dump = detect(path, cache, progress)
    if dump is None:
        raise _unknown(path)
    return dump


def detect(path: str, cache: Cache | None = None, progress: Progress | None = None) -> Dump | None:
    """The reader FORMATS picks for ``path``; None when no magic matches; FormatError when the
    file cannot be read or is a broken dump of a known format."""
    src = FileSource(path)
    head = src.read_at(0, min(src.size, HEAD)) if src.size else b""
    fmt = next((f for f in FORMATS if head.startswith(f.magic)), None)
    if fmt is None:
        src.close()
        return None
    try:
        return fmt.open(path, src, cache, progress)
    except FormatError:
        src.close()
        raise
    except _CORRUPT as err:
        src.close()
        raise FormatError(f"{_name(path)}: truncated or corrupt dump ({err})") from None


def _unknown(path: str) -> FormatError:
    """Why no reader took the file: empty, cut inside a magic, or nothing pmdb knows."""
    name = _name(path)
    with open(path, "rb") as f:
        head = f.read(HEAD)
    if not head:
        return FormatError(f"{name}: empty file")
    if len(head) < HEAD and any(fmt.magic.startswith(head) for fmt in FORMATS):
        return FormatError(f"{name}: truncated: only {len(head)} bytes")
    return FormatError(f"{name}: unknown dump format (first bytes {head[:8].hex(' ')})")


def _name(path: str) -> str:
    return os.path.basename(path) or path
