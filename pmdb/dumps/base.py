"""The Dump abstraction: what one file format knows, and nothing about kernels."""

from __future__ import annotations

import contextlib
import mmap
import os
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass

from pmdb.arch import Arch
from pmdb.errors import FaultError, FormatError
from pmdb.memory.space import AddressSpace


@dataclass(frozen=True)
class Note:
    """One ELF-style note: owner name, type number and raw descriptor bytes."""

    name: str
    type: int
    desc: bytes


# Reads at least this long are copied with pread, not sliced from the map: a scan of
# gigabytes through the map faults each page in (a few us a page here) and leaves it counted in the
# process's resident set (a search of a 4 GB ELF dump peaked at 417 MB); pread copies from
# the page cache and leaves nothing mapped.
PREAD_AT_LEAST = 16 << 10
# Short reads slice the map, and each page they touch stays mapped, counted in the resident
# set, until dropped: after reads that may have touched this many pages (a read, and one
# more page for each 4 KiB of it) the map's pages are let go (MADV_DONTNEED: the page
# cache keeps them; the next read maps its page again, a minor fault), so walking the structures
# and stacks of 10k tasks of a big dump does not keep 300 MB of it resident (128 MB at most).
PAGES_BEFORE_DROP = 32 << 10


class FileSource:
    """Random access to a file: small reads sliced from an mmap (no system call), long
    ones with pread; nothing is read until asked for."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            raise FormatError(f"{path}: {err.strerror}") from None
        try:
            self.size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if self.size else None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._closer = weakref.finalize(self, os.close, fd)   # a source dropped unclosed
        self._touched = 0           # pages the slices since the last drop may have mapped

    def read_at(self, offset: int, n: int) -> bytes:
        """Exactly n bytes at offset, or FaultError (in file-offset terms)."""
        if offset < 0 or offset + n > self.size or self._map is None:
            raise FaultError(offset, n, f"past the end of {os.path.basename(self.path)}")
        if n >= PREAD_AT_LEAST and self._fd is not None:
            data = os.pread(self._fd, n, offset)
            if len(data) != n:
                raise FaultError(offset + len(data), n - len(data),
                                 f"{os.path.basename(self.path)} is shorter than when it was opened")
            return data
        self._touched += 1 + (n >> 12)
        if self._touched >= PAGES_BEFORE_DROP:
            self._touched = 0
            self._drop_mapped_pages()
        return self._map[offset:offset + n]

    def _drop_mapped_pages(self) -> None:
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            self._fd = None
            self._closer()


class Dump(ABC):
    """A file format's view of a dump.

    ``space()`` is the file's one native address space: virtual for user cores,
    physical for vmcores. ``notes`` are the ELF notes (or their equivalents).
    """

    path: str
    arch: Arch
    kind: str  # "user-core" or "vmcore"
    notes: list[Note]

    @abstractmethod
    def space(self) -> AddressSpace:
        """The native address space of the file."""

    def notes_of(self, note_type: int, name: str | None = None) -> list[Note]:
        return [n for n in self.notes if n.type == note_type and (name is None or n.name == name)]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""
