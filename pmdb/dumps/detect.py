"""Sniff a dump file's format from its first bytes and open the right reader.

Every failure is one FormatError line naming the file: missing, empty, an
unknown format, an ELF that is not a core, a truncated or corrupt header.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from pmdb.cache import Cache
from pmdb.dumps.base import Dump, FileSource
from pmdb.errors import FaultError, FormatError
from pmdb.progress import Progress

# Formats recognised by magic when the vmcore readers (pmdb.dumps.vmcore) are absent.
KNOWN_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"KDUMP   ", "a compressed kdump (diskdump) vmcore"),
    (b"DISKDUMP", "a diskdump vmcore"),
    (b"makedumpfile", "a flattened makedumpfile vmcore"),
)


def _open_elf(path: str, src: FileSource) -> Dump:
    from pmdb.dumps.elf import ElfCore

    return ElfCore(path, src)


# magic -> reader(path, source); the first match wins
READERS: list[tuple[bytes, Callable[[str, FileSource], Dump]]] = [
    (b"\x7fELF", _open_elf),
]


def open_dump(path: str, cache: Cache | None = None, progress: Progress | None = None) -> Dump:
    """The Dump for ``path``, or FormatError with one line saying what is wrong.

    ``cache`` and ``progress`` serve compressed (``.zst``) dumps: see pmdb/dumps/zst.py."""
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise FormatError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FormatError(f"{path}: is a directory, not a dump file")
    try:
        vmcore = _sniff_vmcore(path, cache, progress)
    except FormatError:
        raise
    except (FaultError, struct.error, ValueError, OverflowError, MemoryError) as err:
        raise FormatError(f"{name}: truncated or corrupt dump ({err})") from None
    if vmcore is not None:
        return vmcore
    src = FileSource(path)
    try:
        return _sniff(path, name, src)
    except FormatError:
        src.close()
        raise
    except (FaultError, struct.error, ValueError, OverflowError, MemoryError) as err:
        # a length or offset that escaped a bounds check: still one line, never a traceback
        src.close()
        raise FormatError(f"{name}: truncated or corrupt dump ({err})") from None


def _sniff_vmcore(path: str, cache: Cache | None, progress: Progress | None) -> Dump | None:
    """Kernel dumps first (kdump, flattened, ELF vmcores, .zst copies); None for anything else."""
    from pmdb.dumps.vmcore import sniff_vmcore

    return sniff_vmcore(path, cache, progress)


def _sniff(path: str, name: str, src: FileSource) -> Dump:
    if src.size == 0:
        raise FormatError(f"{name}: empty file")
    head = src.read_at(0, min(src.size, 16))
    for magic, reader in READERS:
        if head.startswith(magic):
            return reader(path, src)
    if any(magic.startswith(head) for magic, _ in READERS) and len(head) < 16:
        raise FormatError(f"{name}: truncated: only {src.size} bytes")
    for magic, what in KNOWN_UNSUPPORTED:
        if head.startswith(magic):
            raise FormatError(f"{name}: {what}; this format is not supported yet")
    raise FormatError(f"{name}: unknown dump format (first bytes {head[:8].hex(' ')})")
