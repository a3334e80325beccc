"""The Dump abstraction: what one file format knows, and nothing about kernels."""

from __future__ import annotations

import mmap
import os
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


class FileSource:
    """Random access to a file through mmap, so nothing is read until asked for."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            raise FormatError(f"{path}: {err.strerror}") from None
        try:
            self.size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if self.size else None
        finally:
            os.close(fd)

    def read_at(self, offset: int, n: int) -> bytes:
        """Exactly n bytes at offset, or FaultError (in file-offset terms)."""
        if offset < 0 or offset + n > self.size or self._map is None:
            raise FaultError(offset, n, f"past the end of {os.path.basename(self.path)}")
        return self._map[offset:offset + n]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


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
