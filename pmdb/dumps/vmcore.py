"""Which vmcore format a file is: the one entry point detect.py calls for kernel dumps.

``sniff_vmcore(path)`` opens compressed kdump and diskdump files, flattened
files, ELF vmcores (an ELF core whose notes hold VMCOREINFO or QEMU's CPU
state) and ``.zst`` copies of any of these; for anything else it returns None
so the caller can try the other readers.
"""

from __future__ import annotations

from pmdb.cache import Cache
from pmdb.dumps import zst
from pmdb.dumps.base import Dump, FileSource
from pmdb.dumps.elf import ELF_MAGIC, PT_NOTE, parse_header, parse_notes, read_phdrs
from pmdb.dumps.flattened import FlattenedSource, is_flattened
from pmdb.dumps.kdump import DISKDUMP_SIGNATURE, KDUMP_SIGNATURE, KdumpFile
from pmdb.dumps.vmcore_elf import VmcoreElf
from pmdb.errors import FormatError
from pmdb.progress import Progress

VMCORE_NOTE_OWNERS = ("VMCOREINFO", "QEMU")


def sniff_vmcore(path: str, cache: Cache | None = None, progress: Progress | None = None) -> Dump | None:
    """The vmcore reader for ``path``, None if it is no vmcore; FormatError if it is a broken one.

    ``cache`` holds decompressed ``.zst`` dumps; ``progress`` shows the decompression."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise FormatError(f"{path}: {err.strerror}") from None
    if zst.is_zstd(head):
        return sniff_vmcore(zst.decompressed(path, cache, progress))
    if head[:8] in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
        return KdumpFile(FileSource(path))
    if is_flattened(head):
        return KdumpFile(FlattenedSource(path))
    if head[:4] == ELF_MAGIC:
        return _elf_vmcore(path)
    return None


def _elf_vmcore(path: str) -> Dump | None:
    """A VmcoreElf when the core's notes say it is a kernel's; None for user cores."""
    src = FileSource(path)
    try:
        hdr = parse_header(src)
        owners = {n.name for ph in read_phdrs(src, hdr)
                  if ph.type == PT_NOTE and ph.offset + ph.filesz <= src.size
                  for n in parse_notes(src, ph, hdr.endian)}
    except FormatError:
        src.close()
        return None   # not a core at all, or one the user-core reader explains better
    if not owners.intersection(VMCORE_NOTE_OWNERS):
        src.close()
        return None
    return VmcoreElf(path, src)
