"""Page descriptors and page decompression for kdump files (zlib, lzo, snappy, zstd).

Every decompressor is bounded to one page of output, so a corrupt page cannot
allocate more than that; its errors become a FaultError for that page's address.
The lzo, snappy and zstd modules (hard dependencies) are imported on first
use, so start-up does not pay for them. zlib pages, makedumpfile's ``-c`` and most dumps'
format, are inflated by libdeflate (the ``deflate`` wheel, where one is built: x86-64 and
arm64) in about half zlib's time for a 4 KiB page; a page it refuses, and every page where
it is not installed, goes through zlib, whose error says what is wrong.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import ModuleType

from pmdb.errors import FaultError

_libdeflate: ModuleType | None
try:
    import deflate as _libdeflate
except ImportError:       # pragma: no cover - a platform without the wheel: zlib alone
    _libdeflate = None

DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_ZSTD = 0x20
COMPRESSED = (DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY
              | DUMP_DH_COMPRESSED_ZSTD)


@dataclass(frozen=True)
class PageDescriptor:
    """page_desc_t: where one page's (maybe compressed) bytes are in the file."""

    offset: int
    size: int
    flags: int
    page_flags: int

    SIZE = 24

    @property
    def method(self) -> str:
        for bit, name in ((DUMP_DH_COMPRESSED_ZLIB, "zlib"), (DUMP_DH_COMPRESSED_LZO, "lzo"),
                          (DUMP_DH_COMPRESSED_SNAPPY, "snappy"), (DUMP_DH_COMPRESSED_ZSTD, "zstd")):
            if self.flags & bit:
                return name
        return "raw"


def decompress_page(data: bytes, desc: PageDescriptor, page_size: int, addr: int) -> bytes:
    """One page from its stored bytes, exactly page_size long, or FaultError at addr."""
    method = desc.method
    if method == "raw":
        if desc.size != page_size:
            raise FaultError(addr, page_size, f"corrupt page descriptor: uncompressed page of "
                                              f"{desc.size} bytes (page size {page_size})")
        return data
    if desc.size > 2 * page_size or desc.size == 0:
        raise FaultError(addr, page_size, f"corrupt page descriptor: {method} page of {desc.size} bytes")
    try:
        out = _DECOMPRESS[method](data, page_size)
    except Exception as err:  # noqa: BLE001 - each library has its own error class
        raise FaultError(addr, page_size, f"corrupt {method} data in the dump for this page "
                                          f"({type(err).__name__}: {err})") from None
    if len(out) != page_size:
        raise FaultError(addr, page_size, f"corrupt {method} data in the dump for this page "
                                          f"({len(out)} bytes instead of {page_size})")
    return bytes(out)


def decompress_run(parts: list[bytes], descs: list[tuple[int, int, int, int]], page_size: int,
                   addr: int) -> list[bytes]:
    """Consecutive pages from their stored bytes and raw descriptors (offset, size, flags,
    page_flags), the first at ``addr``."""
    return [stored_page(raw, desc, page_size, addr + i * page_size)
            for i, (raw, desc) in enumerate(zip(parts, descs, strict=True))]


def stored_page(raw: bytes, desc: tuple[int, int, int, int], page_size: int, addr: int) -> bytes:
    """One page from its stored bytes and raw descriptor (offset, size, flags, page_flags).
    A scan decompresses millions of pages and every page miss one: a zlib or plain page
    takes the short way here (one zlib call, no descriptor object); any other, or one that
    fails, goes through decompress_page, which says what is wrong with it."""
    size, flags = desc[1], desc[2]
    if flags == DUMP_DH_COMPRESSED_ZLIB and 0 < size <= 2 * page_size:
        page = _inflate(raw, page_size)
        if len(page) == page_size:
            return page
    elif not flags & COMPRESSED and size == page_size:
        return raw
    return decompress_page(raw, PageDescriptor(*desc), page_size, addr)


def _inflate(data: bytes, page_size: int) -> bytes:
    """A zlib stream of at most page_size bytes, inflated; b"" when it is not one (the
    caller then asks _zlib, which says why)."""
    if _libdeflate is not None:
        try:
            return bytes(_libdeflate.zlib_decompress(data, page_size))
        except _libdeflate.DeflateError:
            return b""
    try:
        return zlib.decompress(data, 15, page_size)
    except zlib.error:
        return b""


def _zlib(data: bytes, page_size: int) -> bytes:
    """zlib alone: decompress_run came here after _inflate refused the page (or its flags
    are not zlib's alone), and zlib's error says what is wrong with it."""
    d = zlib.decompressobj()
    out = d.decompress(data, page_size)
    if not d.eof:
        raise ValueError("incomplete or oversized zlib stream")
    return out


def _lzo(data: bytes, page_size: int) -> bytes:
    """LZO1X through lzallright (safe Rust, wheels everywhere).

    lzallright grows its buffer when the hint is short, but LZO's length coding
    expands at most ~255:1, so a corrupt page of at most two pages' input stays
    within a couple of MB; the caller rejects any length but page_size.
    """
    from lzallright import LZOCompressor

    return LZOCompressor.decompress(data, output_size_hint=page_size)


def _snappy(data: bytes, page_size: int) -> bytes:
    import cramjam

    # The raw snappy stream starts with its length: check it before allocating.
    length, shift, i = 0, 0, 0
    while i < min(len(data), 5):
        length |= (data[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not data[i - 1] & 0x80:
            break
    if length != page_size:
        raise ValueError(f"snappy stream of {length} bytes")
    out = bytearray(page_size)
    n = cramjam.snappy.decompress_raw_into(data, out)
    return bytes(out[:n])


def _zstd(data: bytes, page_size: int) -> bytes:
    import zstandard

    size = zstandard.frame_content_size(data)
    if size > page_size:
        raise ValueError(f"zstd frame of {size} bytes")
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=page_size)


_DECOMPRESS = {"zlib": _zlib, "lzo": _lzo, "snappy": _snappy, "zstd": _zstd}
