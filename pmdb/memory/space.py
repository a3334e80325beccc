"""AddressSpace: the one read interface every layer shares.

A layer implements ``mapping(addr, n)``, which says where the bytes of
``[addr, addr+n)`` live (a list of chunks in lower sources); the generic
``read`` here serves all layers. A source is anything with
``read_at(offset, n) -> bytes``: a file, zeros, or another AddressSpace.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pmdb.errors import FaultError


class ByteSource(Protocol):
    def read_at(self, offset: int, n: int) -> bytes: ...


class ZeroSource:
    """Bytes that are known to be zero (e.g. p_memsz beyond p_filesz)."""

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(n)


ZEROS = ZeroSource()


@dataclass(frozen=True)
class Chunk:
    """``length`` bytes at ``addr`` come from ``source`` at ``offset``."""

    addr: int
    length: int
    source: ByteSource
    offset: int


class AddressSpace(ABC):
    """Reads of typed values; subclasses only say where bytes live."""

    def __init__(self, byteorder: str = "little", ptr_size: int = 8) -> None:
        self.byteorder: Literal["little", "big"] = "big" if byteorder == "big" else "little"
        self.ptr_size = ptr_size
        self._endian = "<" if byteorder == "little" else ">"

    @abstractmethod
    def mapping(self, addr: int, n: int) -> list[Chunk]:
        """Chunks covering exactly [addr, addr+n); FaultError for any hole."""

    def read(self, addr: int, n: int) -> bytes:
        """Exactly n bytes at addr, or FaultError naming the first unreadable byte."""
        if n <= 0:
            return b""
        chunks = self.mapping(addr, n)
        if len(chunks) == 1:
            c = chunks[0]
            data = c.source.read_at(c.offset, c.length)
        else:
            data = b"".join(c.source.read_at(c.offset, c.length) for c in chunks)
        if len(data) != n:
            raise FaultError(addr, n, "short read")
        return data

    def read_at(self, offset: int, n: int) -> bytes:
        """A space is itself a source for the layer above it."""
        return self.read(offset, n)

    def readable(self, addr: int, n: int = 1) -> bool:
        try:
            self.mapping(addr, n)
        except FaultError:
            return False
        return True

    def read_int(self, addr: int, size: int, signed: bool = False) -> int:
        return int.from_bytes(self.read(addr, size), self.byteorder, signed=signed)

    def u8(self, addr: int) -> int:
        return self.read(addr, 1)[0]

    def u16(self, addr: int) -> int:
        return self.read_int(addr, 2)

    def u32(self, addr: int) -> int:
        return self.read_int(addr, 4)

    def u64(self, addr: int) -> int:
        return self.read_int(addr, 8)

    def ptr(self, addr: int) -> int:
        return self.read_int(addr, self.ptr_size)

    def unpack(self, fmt: str, addr: int) -> tuple:
        """struct.unpack in the space's byte order (fmt without the order char)."""
        s = struct.Struct(self._endian + fmt)
        return s.unpack(self.read(addr, s.size))

    def cstring(self, addr: int, limit: int = 4096) -> bytes:
        """NUL-terminated bytes at addr (without the NUL), at most ``limit`` bytes; a string
        that runs into unreadable memory ends there (FaultError only if addr itself is unreadable)."""
        want = min(0x1000 - (addr & 0xFFF), limit)
        try:                            # most strings end in the page they start in: one read
            block = self.read(addr, want)
        except FaultError:
            block = b""
        nul = block.find(b"\0")
        if nul >= 0:
            return block[:nul]
        out = bytearray()
        while len(out) < limit:
            cur = addr + len(out)
            want = min(0x1000 - (cur & 0xFFF), limit - len(out))
            try:
                block = self.read(cur, want)
            except FaultError:
                block = self._readable_prefix(cur, want)
                if not block and not out:
                    raise
            nul = block.find(b"\0")
            if nul >= 0:
                return bytes(out + block[:nul])
            out += block
            if len(block) < want:
                break
        return bytes(out)

    def _readable_prefix(self, addr: int, n: int) -> bytes:
        """The longest readable run of bytes at addr, at most n (used at the edge of a hole)."""
        good = 0
        while good < n and self.readable(addr + good, 1):
            good += 1
        return self.read(addr, good) if good else b""


@dataclass(frozen=True)
class Segment:
    """A contiguous run of a segmented space, backed by one source."""

    start: int
    size: int
    source: ByteSource
    offset: int = 0
    name: str = ""

    @property
    def end(self) -> int:
        return self.start + self.size


class SegmentedSpace(AddressSpace):
    """A space made of segments (user cores, ELF vmcores), kept sorted and disjoint.

    Lookup is by bisection, so cost grows with the log of the segment count.
    """

    def __init__(self, segments: list[Segment], byteorder: str = "little", ptr_size: int = 8,
                 hole_reason: str = "address not in the dump") -> None:
        super().__init__(byteorder, ptr_size)
        self.segments = disjoint(segments)
        self._starts = [s.start for s in self.segments]
        self._hole_reason = hole_reason

    def segment_at(self, addr: int) -> Segment | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.segments[i].end:
            return self.segments[i]
        return None

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        chunks: list[Chunk] = []
        cur, left = addr, n
        while left > 0:
            seg = self.segment_at(cur)
            if seg is None:
                raise FaultError(cur, left, self._hole_reason)
            take = min(left, seg.end - cur)
            chunks.append(Chunk(cur, take, seg.source, seg.offset + (cur - seg.start)))
            cur += take
            left -= take
        return chunks


def disjoint(segments: list[Segment]) -> list[Segment]:
    """Segments sorted by start with overlaps cut away: where two cover the same addresses
    the one starting lower keeps them. A vmcore from kexec-tools (/proc/vmcore) has a PT_LOAD
    for the kernel image inside the one for the RAM holding it; lookup by bisection would
    find only the image's and call the rest of that RAM a hole."""
    out: list[Segment] = []
    covered = None
    for seg in sorted((s for s in segments if s.size > 0), key=lambda s: (s.start, -s.size)):
        if covered is not None and seg.end <= covered:
            continue
        if covered is not None and seg.start < covered:
            cut = covered - seg.start
            seg = Segment(covered, seg.size - cut, seg.source, seg.offset + cut, seg.name)
        out.append(seg)
        covered = seg.end
    return out


def stored_digest(space: AddressSpace, addr: int, n: int) -> str:
    """A hash of how [addr, addr+n) is *stored*: followed down through the stacked spaces to
    the bytes in the file. A space or source that can say how it stores a range
    (``stored(offset, n)``: kdump pages' compression flags and compressed bytes, as a list
    of parts hashed one after another) is hashed by that, which is cheaper than decompressing; any other source by the bytes themselves. Equal digests mean
    equal contents, since decompression is a function of what is stored, so the digest keys
    a cache of derived data by content, soundly, whatever the dump claims about itself."""
    h = hashlib.sha256(f"{n}:".encode())
    _digest_into(h, space, addr, n)
    return h.hexdigest()


def _digest_into(h: Any, space: AddressSpace, addr: int, n: int) -> None:
    # asked of the class: a wrapper forwarding attributes (an overlay) must not answer for
    # the space it changes
    if hasattr(type(space), "stored"):
        for part in space.stored(addr, n):  # type: ignore[attr-defined]
            h.update(part)
        return
    for c in space.mapping(addr, n):
        src = c.source
        h.update(c.length.to_bytes(8, "little"))
        if isinstance(src, AddressSpace) and src is not space:
            _digest_into(h, src, c.offset, c.length)
        else:
            h.update(src.read_at(c.offset, c.length))
