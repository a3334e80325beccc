"""The BTF wire format: header, kind numbers, and the one-pass record scan.

Kept apart from btf.py (which builds model Types) so the byte-level rules and
their bounds checks sit in one place. The scan is the only full pass made at
open: it records where each type record starts, using per-kind size tables
instead of decoding each record, because the kernel's BTF has ~130k of them.
"""

from __future__ import annotations

import itertools
import operator
import struct
import sys
from array import array
from dataclasses import dataclass

from pmdb.errors import FormatError

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic version flags hdr_len type_off type_len str_off str_len

(UNKN, INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT,
 FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(20)
NR_KINDS = 20

KIND_NAMES = ("unknown", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef",
              "volatile", "const", "restrict", "func", "func_proto", "var", "datasec", "float",
              "decl_tag", "type_tag", "enum64")

# Words (u32) after the 3-word common header: a fixed part plus vlen times a per-item part.
_FIXED = [0] * 32
_PER_ITEM = [0] * 32
for _k, _n in ((INT, 1), (ARRAY, 3), (VAR, 1), (DECL_TAG, 1)):
    _FIXED[_k] = _n
for _k, _n in ((STRUCT, 3), (UNION, 3), (ENUM, 2), (ENUM64, 3), (FUNC_PROTO, 2), (DATASEC, 3)):
    _PER_ITEM[_k] = _n
# An unknown kind makes the fast scan overshoot; the slow scan then names it.
for _k in range(NR_KINDS, 32):
    _FIXED[_k] = 1 << 40

INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4


@dataclass(frozen=True)
class Header:
    """The BTF header: byte order, version and where its two sections lie."""

    big_endian: bool
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int

    @property
    def total(self) -> int:
        """Bytes the blob must have for both sections to be present."""
        return self.hdr_len + max(self.type_off + self.type_len, self.str_off + self.str_len)


def parse_header(data: bytes) -> Header:
    """The header, in whichever byte order the magic says; FormatError otherwise."""
    if len(data) < HEADER.size:
        raise FormatError(f"BTF truncated: {len(data)} bytes, the header alone needs {HEADER.size}")
    fields = HEADER.unpack_from(data)
    big = False
    if fields[0] != MAGIC:
        fields = struct.unpack_from(">HBBIIIII", data)
        big = True
        if fields[0] != MAGIC:
            raise FormatError(f"not BTF: magic {data[0]:02x}{data[1]:02x}, expected 9feb or eb9f")
    hdr = Header(big, *fields[1:])
    if hdr.version != 1:
        raise FormatError(f"BTF version {hdr.version} is not supported (only version 1)")
    if hdr.hdr_len < HEADER.size:
        raise FormatError(f"BTF header length {hdr.hdr_len} is shorter than {HEADER.size}")
    if hdr.type_off % 4 or hdr.type_len % 4:
        raise FormatError(f"BTF type section at +{hdr.type_off:#x} ({hdr.type_len} bytes) is not 4-byte aligned")
    return hdr


def check_sections(hdr: Header, size: int) -> None:
    """Both sections lie inside a blob of ``size`` bytes."""
    for what, off, length in (("type", hdr.type_off, hdr.type_len), ("string", hdr.str_off, hdr.str_len)):
        end = hdr.hdr_len + off + length
        if end > size:
            raise FormatError(f"BTF {what} section [{hdr.hdr_len + off:#x}, {end:#x}) "
                              f"runs past the end of the data ({size:#x} bytes)")


def words(section: bytes | memoryview, big_endian: bool) -> array:
    """The type section as native u32 words (one copy, byte-swapped when needed)."""
    w = array("I")
    if w.itemsize != 4:  # pragma: no cover - every platform pmdb runs on has a 4-byte 'I'
        w = array("L")
    w.frombytes(section)
    if big_endian != (sys.byteorder == "big"):
        w.byteswap()
    return w


def scan(w: array) -> tuple[array, array]:
    """(word offset of every type record, in id order; its name offset); FormatError if
    the records do not tile the section exactly. A record's size is looked up by its info
    word (a kernel's ~100k records have a few thousand distinct ones), and the name offsets
    are gathered on the way: the one Python loop over the records does both."""
    offs, names = array("I"), array(w.typecode)
    add, add_name = offs.append, names.append
    sizes: dict[int, int] = {}
    fixed, per = _FIXED, _PER_ITEM
    end = len(w)
    p = 0
    try:
        while p < end:
            add_name(w[p])
            add(p)
            info = w[p + 1]
            try:
                p += sizes[info]
            except KeyError:
                k = (info >> 24) & 31
                p += sizes.setdefault(info, 3 + fixed[k] + (info & 0xFFFF) * per[k])
    except IndexError:
        pass
    if p != end:
        _diagnose(w)
    return offs, names


_SAMPLE_EVERY = 997    # cached index entries checked against the words (a prime stride)


def checked_offsets(w: array, offs: array) -> array:
    """``offs`` as ``scan(w)`` would give it, from a cache (whose checksum already vouches
    for its bytes): it must start at 0, increase (sampled), and its last record must end
    the section; FormatError otherwise (then scan again)."""
    if len(offs) == 0:
        if len(w):
            raise FormatError("cached BTF record offsets are empty")
        return offs
    last = offs[-1]
    picks = offs[::_SAMPLE_EVERY]
    if offs[0] != 0 or last + 3 > len(w) or not all(map(operator.lt, picks, itertools.islice(picks, 1, None))):
        raise FormatError("cached BTF record offsets do not fit the type section")
    info = w[last + 1]
    k = (info >> 24) & 31
    if last + 3 + _FIXED[k] + (info & 0xFFFF) * _PER_ITEM[k] != len(w):
        raise FormatError("cached BTF record offsets do not end with the type section")
    return offs


def checked_names(w: array, offs: array, names: array) -> array:
    """The cached name offset of every record (as ``w[offs[i]]``), checked in samples."""
    if len(names) != len(offs) or any(w[offs[i]] != names[i] for i in range(0, len(offs), _SAMPLE_EVERY)):
        raise FormatError("cached BTF name offsets do not fit the type records")
    return names


def _diagnose(w: array) -> None:
    """Re-walk slowly to say which record is bad (only after the fast scan failed)."""
    end = len(w)
    p = 0
    index = 0
    while p < end:
        if p + 3 > end:
            raise FormatError(f"BTF type section truncated inside the header of type #{index + 1}")
        info = w[p + 1]
        k, vlen = (info >> 24) & 31, info & 0xFFFF
        if k >= NR_KINDS:
            raise FormatError(f"BTF type #{index + 1} has unknown kind {k}")
        need = 3 + _FIXED[k] + vlen * _PER_ITEM[k]
        if p + need > end:
            raise FormatError(f"BTF type #{index + 1} ({KIND_NAMES[k]}, vlen {vlen}) "
                              f"runs past the end of the type section")
        p += need
        index += 1
    raise FormatError("BTF type section is corrupt")  # pragma: no cover - the fast scan agreed
