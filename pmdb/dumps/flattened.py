"""makedumpfile's flattened format (``makedumpfile -F``, QEMU's kdump-* output), read in place.

A flattened file is a stream: a 4 KiB header with the signature ``makedumpfile``,
then records of (target offset, size) in big-endian followed by ``size`` bytes,
ending with a record of offset -1. ``makedumpfile -R`` would write each record
at its offset to rebuild the real file; here one pass over the record headers
builds an index, and reads of the rebuilt file are served from the flattened
one. Nothing is copied.
"""

from __future__ import annotations

import bisect
import os
import struct

from pmdb.dumps.base import FileSource
from pmdb.errors import FaultError, FormatError

SIGNATURE = b"makedumpfile"
HEADER_SIZE = 4096
RECORD = struct.Struct(">qq")
END_FLAG = -1
MAX_RECORDS = 1 << 26    # a 64-byte record per page of a 256 GiB machine; more means a loop
MAX_RECORD = 1 << 32     # writers flush buffers of a few MiB at a time
MAX_OFFSET = 1 << 56     # a rebuilt file of 64 PiB is no dump


def is_flattened(head: bytes) -> bool:
    return head[:16] == SIGNATURE + bytes(4)


class FlattenedSource:
    """The rearranged file as a ByteSource: ``read_at`` by offset in the rebuilt file.

    ``size`` is where the rebuilt file would end. Bytes no record wrote read as
    zeros, as they would in the sparse file ``makedumpfile -R`` leaves.
    """

    def __init__(self, path: str, source: FileSource | None = None) -> None:
        self.path = path
        self.file = source or FileSource(path)
        self._check_header()
        self.truncated = False
        starts, ends, where = self._index()
        self._starts, self._ends, self._where = starts, ends, where
        self.size = max(ends) if ends else 0
        self.records = len(starts)

    def _name(self) -> str:
        return os.path.basename(self.path)

    def _check_header(self) -> None:
        if self.file.size < 32 or not is_flattened(self.file.read_at(0, 16)):
            raise FormatError(f"{self._name()}: not a flattened makedumpfile file")
        ftype, version = struct.unpack(">qq", self.file.read_at(16, 16))
        if ftype != 1:
            raise FormatError(f"{self._name()}: unknown flattened header type {ftype}")
        if self.file.size < HEADER_SIZE:
            raise FormatError(f"{self._name()}: truncated flattened file ({self.file.size} bytes, "
                              f"header alone is {HEADER_SIZE})")

    def _index(self) -> tuple[list[int], list[int], list[int]]:
        """One pass over the record headers: [(target start, end, file offset of data)], sorted."""
        recs: list[tuple[int, int, int]] = []
        pos, fsize = HEADER_SIZE, self.file.size
        while True:
            if pos + RECORD.size > fsize:
                self.truncated = True   # no end marker: use what arrived, as makedumpfile -R would
                break
            offset, size = RECORD.unpack(self.file.read_at(pos, RECORD.size))
            if offset == END_FLAG:
                break
            if offset < 0 or size < 0 or size > MAX_RECORD or offset > MAX_OFFSET:
                raise FormatError(f"{self._name()}: corrupt flattened record at file offset {pos:#x} "
                                  f"(target offset {offset:#x}, size {size:#x})")
            if pos + RECORD.size + size > fsize:
                size = fsize - pos - RECORD.size   # cut off by a full disk: keep what was written
                self.truncated = True
            if size:
                recs.append((offset, offset + size, pos + RECORD.size))
            if len(recs) > MAX_RECORDS:
                raise FormatError(f"{self._name()}: corrupt flattened file: more than {MAX_RECORDS} records")
            pos += RECORD.size + size
            if self.truncated:
                break
        return _resolve(recs)

    def read_at(self, offset: int, n: int) -> bytes:
        """Exactly n bytes of the rebuilt file at offset, or FaultError past its end."""
        if offset < 0 or offset + n > self.size:
            raise FaultError(offset, n, f"past the end of {self._name()} (rebuilt size {self.size:#x})")
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and offset + n <= self._ends[i]:   # the common case: inside one record
            at = self._where[i] + offset - self._starts[i]
            return self.file.read_at(at, n)
        return self._read_across(offset, n, max(i, 0))

    def _read_across(self, offset: int, n: int, i: int) -> bytes:
        out = bytearray()
        cur, end = offset, offset + n
        while cur < end:
            while i < len(self._starts) and self._ends[i] <= cur:
                i += 1
            if i >= len(self._starts) or self._starts[i] >= end:
                out += bytes(end - cur)
                break
            if self._starts[i] > cur:
                out += bytes(self._starts[i] - cur)
                cur = self._starts[i]
            take = min(end, self._ends[i]) - cur
            out += self.file.read_at(self._where[i] + cur - self._starts[i], take)
            cur += take
        return bytes(out)

    def close(self) -> None:
        self.file.close()


def _resolve(recs: list[tuple[int, int, int]]) -> tuple[list[int], list[int], list[int]]:
    """Sorted, non-overlapping pieces; where records overlap, the later one wins (as with -R)."""
    order = sorted(range(len(recs)), key=lambda k: recs[k][0])
    overlapping = any(recs[order[j]][0] < recs[order[j - 1]][1] for j in range(1, len(order)))
    if overlapping:
        return _resolve_overlaps(recs)
    starts = [recs[k][0] for k in order]
    ends = [recs[k][1] for k in order]
    where = [recs[k][2] for k in order]
    return starts, ends, where


def _resolve_overlaps(recs: list[tuple[int, int, int]]) -> tuple[list[int], list[int], list[int]]:
    """Newest record first; each keeps only the parts no newer record covers."""
    starts: list[int] = []
    ends: list[int] = []
    where: list[int] = []
    for start, end, at in reversed(recs):
        cur = start
        i = bisect.bisect_right(starts, cur) - 1
        if i >= 0 and ends[i] > cur:
            cur = ends[i]
        i += 1
        while cur < end:
            nxt = starts[i] if i < len(starts) else end
            piece_end = min(end, nxt)
            if piece_end > cur:
                starts.insert(i, cur)
                ends.insert(i, piece_end)
                where.insert(i, at + cur - start)
                i += 1
            if i < len(starts) and starts[i] < end:
                cur = ends[i]
                i += 1
            else:
                cur = end
    return starts, ends, where
