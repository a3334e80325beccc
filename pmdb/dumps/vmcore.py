"""Kernel dumps only: ``sniff_vmcore(path)`` opens a file if it is a vmcore of any format.

Compressed kdump and diskdump files, flattened files, ELF vmcores and ``.zst``
copies of these are told apart by pmdb.dumps.detect's one table; this returns
None for what is no vmcore (a user core, an unknown or empty file) so a caller
that only wants kernels can tell.
"""

from __future__ import annotations

from pmdb.cache import Cache
from pmdb.dumps.base import Dump
from pmdb.dumps.detect import detect
from pmdb.progress import Progress


def sniff_vmcore(path: str, cache: Cache | None = None, progress: Progress | None = None) -> Dump | None:
    """The vmcore reader for ``path``, None if it is no vmcore; FormatError if it is a broken dump.

    ``cache`` holds decompressed ``.zst`` dumps; ``progress`` shows the decompression."""
    dump = detect(path, cache, progress)
    if dump is not None and dump.kind != "vmcore":
        dump.close()
        return None
    return dump
