"""A sealed file: a payload behind its kind and a checksum, so a damaged one is never read.

Kept apart from pmdb.cache (which re-exports it) so code that runs before any dataclass
exists (pmdb.codecache) can check its file without importing one.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

_SEAL = struct.Struct("<QI")  # a sealed entry's payload length and CRC-32


def sealed(kind: bytes, payload: bytes) -> bytes:
    """``payload`` behind a header naming what it is (``kind``, 8 bytes: a format and its
    version), its length and a CRC-32 of it, so a reader tells a damaged entry from a good
    one. (A check against damage, not an authenticator: entries are keyed by content, so a
    dump can only reach its own; CRC-32 reads 8 MB in 0.2 ms through libdeflate, in 2 ms
    through zlib, a cryptographic hash in 5-10.)"""
    return b"".join(sealed_parts(kind, (payload,)))


def sealed_parts(kind: bytes, parts: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
    """``sealed`` of the concatenated ``parts``, as the header followed by the parts
    themselves: written one after another they are that entry, with no copy of megabytes
    made to join them."""
    assert len(kind) == 8
    crc = 0
    for part in parts:
        crc = _crc32(part, crc)
    return [kind + _SEAL.pack(sum(memoryview(p).nbytes for p in parts), crc), *parts]


def unsealed(kind: bytes, data: bytes) -> memoryview | None:
    """The payload of a ``sealed`` entry of this ``kind`` (a view, not a copy); None when the
    entry is of another kind or version, cut short, or damaged (its CRC does not match)."""
    head = len(kind) + _SEAL.size
    if len(data) < head or data[:len(kind)] != kind:
        return None
    size, crc = _SEAL.unpack_from(data, len(kind))
    payload = memoryview(data)[head:]
    if len(payload) != size or _crc32(payload) != crc:
        return None
    return payload


_LONG = 1 << 18     # bytes from which libdeflate's CRC-32 is worth importing it (0.5 ms)


def _crc32(data: bytes | memoryview, value: int = 0) -> int:
    """zlib's CRC-32 (the same value), through libdeflate for long data: it uses the CPU's
    carry-less multiply and reads the ~10 MB of a kernel's cache entries ~10x faster. (The
    dataclass code kept at every start is short: no import for it.)"""
    if memoryview(data).nbytes >= _LONG:
        try:
            import deflate
        except ImportError:     # pragma: no cover - a platform without the wheel
            return zlib.crc32(data, value)
        result: int = deflate.crc32(data, value)
        return result
    return zlib.crc32(data, value)
