"""Find the kallsyms arrays in the kernel image when VMCOREINFO does not name them.

VMCOREINFO names the kallsyms arrays only since Linux 6.0; an older kernel's
dump still holds them in the image's .rodata, and this module finds them there
so a 5.x dump opens with nothing but the dump.

Until Linux 6.2 scripts/kallsyms.c emits, each label aligned to the word size
(``ALGN``: 8 bytes on 64-bit, 4 on 32-bit), in this order (CONFIG_KALLSYMS_BASE_RELATIVE, the x86-64
default since 4.6)::

    kallsyms_offsets        .long x num_syms
    kallsyms_relative_base  PTR (.quad; .long on 32-bit)
    kallsyms_num_syms       .long
    kallsyms_names          length-prefixed token records
    kallsyms_markers        .long x ((num_syms + 255) >> 8): offset of every 256th record
    kallsyms_token_table    256 NUL-terminated strings
    kallsyms_token_index    .short x 256: each string's offset in the table

(6.2 added kallsyms_seqs_of_names after the markers and 6.4 moved the token
tables before them, but those kernels' VMCOREINFO names every array, so only
this older order is searched.)

The anchor is the token table: every byte value a symbol name uses stands for
itself, so the digits' tokens "0".."9" lie at indexes 0x30..0x39 as the ten
bytes ``0\\0 1\\0 ... 9\\0``. From a hit the scan walks forward to the token
index, then backwards over the markers (ascending, the first 0) to
num_syms, relative_base and offsets. A candidate counts only when every
256th record starts where its marker says, the records end exactly at the
markers, and a symbol at ``_stext``'s address is named ``_stext`` or
``_text``: a wrong guess is never used.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kallsyms import KallsymsTables, decode_names, read_tokens

SCAN_LIMIT = 64 << 20        # the x86-64 image is tens of MB; never read further than this
_CHUNK = 1 << 20
_PAGE = 0x1000
_DIGITS = b"".join(bytes((c, 0)) for c in b"0123456789")
_MAX_TOKEN = 64              # a token is at most a few pairs deep; longer is not a token table
_MAX_MARKERS = 1 << 14       # 4M symbols / 256: KallsymsTables' own bound
_MAX_LAST_GROUP = 256 * 256  # the last group: fewer than 256 records of at most 255 bytes
_SAMPLED_GROUPS = 32


@dataclass(frozen=True)
class ScanResult:
    """What the scan found, and what it cost (for ``::status`` and benchmarks)."""

    tables: KallsymsTables
    scanned: int                 # bytes of the image read while searching


def scan_kallsyms(mem: AddressSpace, stext: int, hint: int | None = None,
                  limit: int = SCAN_LIMIT) -> ScanResult:
    """The kallsyms arrays of the image starting at ``stext``; SymbolError when none validates.

    ``hint`` is an address above .rodata (a .data symbol VMCOREINFO names): kallsyms
    is the last object linked into vmlinux, so its .rodata sits near the end of the
    section, and searching down from there first finds it after a few MB, not ~20.
    """
    end = stext + limit
    first = hint if hint is not None and stext < hint < end else end
    scanned = 0
    for base, data in _chunks(mem, stext, first, end):
        scanned += len(data)
        for off in _hits(data):
            tables = _tables_at(mem, base + off, stext)
            if tables is not None:
                return ScanResult(tables, scanned)
    raise SymbolError(f"no kallsyms tables in the {limit >> 20} MB of kernel image at {stext:#x} "
                      "(VMCOREINFO names them only since Linux 6.0)")


def _chunks(mem: AddressSpace, start: int, first: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The image in chunks that overlap by a pattern's length: down from ``first`` to
    ``start``, then up from ``first`` to ``end``."""
    over = len(_DIGITS) - 1
    top = first
    while top > start:
        lo = max(start, top - _CHUNK)
        yield lo, _read_some(mem, lo, top - lo + over)
        top = lo
    lo = first
    while lo < end:
        yield lo, _read_some(mem, lo, min(_CHUNK + over, end - lo))
        lo += _CHUNK


def _read_some(mem: AddressSpace, addr: int, n: int) -> bytes:
    """n bytes, with unreadable pages (a dump's excluded zero pages, the end of the
    image) as zeros: they cannot hold a token table, and a hole must not end the scan."""
    try:
        return mem.read(addr, n)
    except FaultError:
        pass
    out = bytearray()
    while len(out) < n:
        cur = addr + len(out)
        want = min(_PAGE - (cur % _PAGE), n - len(out))
        try:
            out += mem.read(cur, want)
        except FaultError:
            out += bytes(want)
    return bytes(out)


def _hits(data: bytes) -> Iterator[int]:
    pos = data.find(_DIGITS)
    while pos >= 0:
        yield pos
        pos = data.find(_DIGITS, pos + 1)


def _tables_at(mem: AddressSpace, digits: int, stext: int) -> KallsymsTables | None:
    """The tables around a "0".."9" hit, or None when any check fails."""
    try:
        index_at = _token_index_after(mem, digits)   # ALGN is the word size: 8, or 4 on 32-bit
        if index_at is None:
            return None
        index = struct.unpack("<256H", mem.read(index_at, 512))
        token_table = digits - index[0x30]
        if index[0] != 0 or any(a >= b for a, b in zip(index, index[1:], strict=False)):
            return None
        markers_at, markers = _markers_before(mem, token_table)
        if not markers:
            return None
        return _validate(mem, stext, token_table, index_at, markers_at, markers)
    except (FaultError, FormatError, struct.error):
        return None


def _token_index_after(mem: AddressSpace, digits: int) -> int | None:
    """Where kallsyms_token_index starts: after tokens 0x30..0xff, 8-aligned."""
    blob = _read_some(mem, digits, (0x100 - 0x30) * (_MAX_TOKEN + 1))   # may end near a hole
    pos = 0
    for _ in range(0x30, 0x100):
        end = blob.find(b"\0", pos, pos + _MAX_TOKEN + 1)
        if end <= pos:          # an empty or overlong string is not a token
            return None
        pos = end + 1
    return _align(digits + pos, mem.ptr_size)


def _markers_before(mem: AddressSpace, token_table: int) -> tuple[int, list[int]]:
    """kallsyms_markers, read backwards from the token table: ascending u32 back to its 0."""
    span = 4 * (_MAX_MARKERS + 1)
    lo = max(token_table - span, 0)
    vals = struct.unpack(f"<{(token_table - lo) // 4}I", mem.read(lo, token_table - lo))
    i = len(vals) - 1
    if vals[i] == 0:            # an odd count leaves 4 bytes of padding before ALGN
        i -= 1
    if i < 0 or vals[i] == 0:
        return 0, []
    out = [vals[i]]
    while i > 0 and vals[i - 1] < out[-1]:
        i -= 1
        out.append(vals[i])
        if vals[i] == 0:
            out.reverse()
            return lo + 4 * i, out
    return 0, []


def _validate(mem: AddressSpace, stext: int, token_table: int, token_index: int,
              markers_at: int, markers: list[int]) -> KallsymsTables | None:
    """Find num_syms below the names and check everything that can be checked."""
    groups, align = len(markers), mem.ptr_size
    # the names end before the markers, and the last group holds at least one record
    top = _floor(markers_at - markers[-1] - 1, align) - align
    lo = max(_floor(top - _MAX_LAST_GROUP - align, align), 0)
    window = mem.read(lo, top + 4 - lo)      # one read, not a read per candidate
    for num_syms in range(top, lo - 1, -align):
        count = int.from_bytes(window[num_syms - lo:num_syms - lo + 4], "little")
        if (count + 255) >> 8 != groups:
            continue
        names = num_syms + align
        blob = mem.read(names, markers_at - names)
        if not _records_fit(blob, count, markers, align):
            continue
        base_at = num_syms - align
        offsets = base_at - _align(4 * count, align)
        tables = KallsymsTables(names, num_syms, token_table, token_index, offsets, base_at)
        if _names_stext(mem, tables, blob, count, markers, stext):
            return tables
    return None


def _records_fit(blob: bytes, count: int, markers: list[int], align: int) -> bool:
    """Whether the records agree with the markers: every sampled group of 256 ends where
    the next marker says (about 32 groups, spread over the table, cost ~1 ms where walking
    all 100k records costs ~20), and the last group ends exactly where the padding before
    the markers begins. A wrong num_syms or names start fails the first or the last."""
    groups = len(markers)
    stride = max(1, (groups - 1) // _SAMPLED_GROUPS)
    for k in range(0, groups - 1, stride):
        if _walk(blob, markers[k], 256) != markers[k + 1]:
            return False
    end = _walk(blob, markers[-1], count - 256 * (groups - 1))
    return 0 <= end <= len(blob) and _align(end, align) == len(blob)


def _walk(blob: bytes, pos: int, records: int) -> int:
    """Where ``records`` records starting at ``pos`` end; -1 when they run off the blob."""
    size = len(blob)
    for _ in range(records):
        if pos >= size:
            return -1
        n = blob[pos]
        if n & 0x80:             # a second length byte (6.1's long names; never set before)
            pos += 1
            n = (n & 0x7F) | (blob[pos] << 7) if pos < size else 0
        pos += n + 1
    return pos


def _names_stext(mem: AddressSpace, tables: KallsymsTables, blob: bytes, count: int,
                 markers: list[int], stext: int) -> bool:
    """Whether a symbol at ``stext`` decodes to ``_stext`` or ``_text`` (letter T). Only
    the offsets equal to ``stext``'s encoding are decoded (all 100k would cost ~15 ms)."""
    assert tables.relative_base is not None
    base = mem.ptr(tables.relative_base)
    offs = struct.unpack(f"<{count}i", mem.read(tables.offsets, 4 * count))
    if min(offs) >= 0:
        want = stext - base          # plain base-relative
    else:
        want = base - 1 - stext      # ABSOLUTE_PERCPU: a kernel address is a negative offset
        if want >= 0:
            return False
    tokens = read_tokens(mem, tables)
    return any(_record(blob, markers, i, tokens) in ("T_stext", "T_text")
               for i, o in enumerate(offs) if o == want)


def _record(blob: bytes, markers: list[int], i: int, tokens: list[str]) -> str:
    group = markers[i >> 8]
    return decode_names(blob[group:group + _MAX_LAST_GROUP * 2], (i & 0xFF) + 1, tokens)[-1]


def _floor(addr: int, align: int) -> int:
    return addr & ~(align - 1)


def _align(addr: int, align: int) -> int:
    return (addr + align - 1) & ~(align - 1)
