"""The kallsyms scan on synthetic kernel images laid out as scripts/kallsyms.c (5.x) does.

A small builder writes the seven arrays in their pre-6.2 order, each 8-aligned, into an
image with decoys around them; the scan must find exactly them, and refuse (one line)
whenever a check fails, so a wrong guess is never used.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

from pmdb.errors import FaultError, SymbolError
from pmdb.memory.space import Segment, SegmentedSpace
from pmdb.symbols.kallsyms import KallsymsTables, load_kallsyms
from pmdb.symbols.kallsyms_scan import _DIGITS, scan_kallsyms

STEXT = 0xFFFFFFFF81000000
AT = 0x40000                       # where the arrays begin in the image
PCPU = 0x1F000                     # an absolute per-CPU symbol (5.10 x86-64's ABSOLUTE_PERCPU)


def _align(n: int) -> int:
    return (n + 7) & ~7


def _tokens() -> list[bytes]:
    """Each byte a name uses stands for itself; the others for pairs, as the kernel's do."""
    used = set(b"_0123456789abcdefghijklmnopqrstuvwxyzTtDd")
    pairs = iter([b"_s", b"te", b"xt", b"fu", b"nc", b"pe", b"r_"] * 40)
    return [bytes([i]) if i in used else next(pairs) for i in range(256)]


def _encode(name: str, tokens: list[bytes]) -> bytes:
    """A name as a record: a length byte, then token indexes (pairs where a token has one)."""
    pairs = {t: i for i, t in enumerate(tokens) if len(t) == 2}
    raw, out, i = name.encode(), bytearray(), 0
    while i < len(raw):
        if raw[i:i + 2] in pairs:
            out.append(pairs[raw[i:i + 2]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes([len(out)]) + bytes(out)


@dataclass
class Image:
    data: bytearray
    names: list[str]               # with type letters
    addrs: list[int]
    tables: KallsymsTables
    markers: int                   # where kallsyms_markers begins


def build(count: int = 700) -> Image:
    """An image: decoys, then offsets .. token_index (5.10's order), then a later decoy."""
    tokens = _tokens()
    names = ["T_text", "T_stext", "Dper_cpu_thing"] + [f"tfunc_{i}" for i in range(count - 3)]
    addrs = [STEXT, STEXT, PCPU] + [STEXT + 0x1000 + 0x20 * i for i in range(count - 3)]
    # sorted by address, as the kernel sorts them: the per-CPU one first
    order = sorted(range(count), key=lambda i: (addrs[i] if addrs[i] >= STEXT else -1, i))
    names, addrs = [names[i] for i in order], [addrs[i] for i in order]
    base = STEXT
    offsets = [a if a < STEXT else -(a - base) - 1 for a in addrs]  # percpu absolute, others down from base-1
    records = [_encode(n, tokens) for n in names]
    marks, blob, pos = [], bytearray(), 0
    for i, rec in enumerate(records):
        if i % 256 == 0:
            marks.append(pos)
        blob += rec
        pos += len(rec)
    table = b"".join(t + b"\0" for t in tokens)
    index = []
    off = 0
    for t in tokens:
        index.append(off)
        off += len(t) + 1

    img = bytearray(AT)
    img[0x100:0x100 + len(_DIGITS)] = _DIGITS          # a decoy well below
    where = {}

    def put(name: str, data: bytes) -> None:
        img.extend(bytes(_align(len(img)) - len(img)))
        where[name] = STEXT + len(img)
        img.extend(data)

    put("offsets", struct.pack(f"<{count}i", *offsets))
    put("relative_base", struct.pack("<Q", base))
    put("num_syms", struct.pack("<I", count))
    put("names", bytes(blob))
    put("markers", struct.pack(f"<{len(marks)}I", *marks))
    put("token_table", table)
    put("token_index", struct.pack("<256H", *index))
    img.extend(bytes(0x100) + _DIGITS + b"junk" + bytes(0x2000))    # a decoy above, found first
    tables = KallsymsTables(where["names"], where["num_syms"], where["token_table"],
                            where["token_index"], where["offsets"], where["relative_base"])
    return Image(img, names, addrs, tables, where["markers"])


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_at(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]


def space(img: Image) -> SegmentedSpace:
    return SegmentedSpace([Segment(STEXT, len(img.data), _Bytes(bytes(img.data)))])


def scan(img: Image) -> KallsymsTables:
    return scan_kallsyms(space(img), STEXT, hint=STEXT + len(img.data), limit=1 << 20).tables


def test_finds_the_arrays_and_they_decode() -> None:
    img = build()
    tables = scan(img)
    assert tables == img.tables
    syms = load_kallsyms(space(img), tables)
    assert [n[1:] for n in img.names] == syms.all_names()
    assert list(syms.addresses()) == img.addrs


@pytest.mark.parametrize("count", [257, 512, 513])
def test_marker_counts_odd_and_even(count: int) -> None:
    img = build(count)       # an odd number of markers leaves 4 bytes of padding
    assert scan(img) == img.tables


def _refused(img: Image) -> str:
    with pytest.raises(SymbolError) as err:
        scan(img)
    text = str(err.value)
    assert "\n" not in text and "no kallsyms tables" in text
    return text


def test_a_wrong_marker_is_refused() -> None:
    img = build()
    at = img.markers + 4 - STEXT
    struct.pack_into("<I", img.data, at, struct.unpack_from("<I", img.data, at)[0] + 1)
    _refused(img)


def test_a_wrong_symbol_count_is_refused() -> None:
    img = build()
    struct.pack_into("<I", img.data, img.tables.num_syms - STEXT, 600)   # same markers, fewer records
    _refused(img)


def test_names_without_stext_at_stext_are_refused() -> None:
    img = build()
    with pytest.raises(SymbolError, match="no kallsyms tables"):
        scan_kallsyms(_shifted(img), STEXT, hint=STEXT + len(img.data), limit=1 << 20)


def _shifted(img: Image) -> SegmentedSpace:
    """The image with relative_base moved: every address is off, _stext included."""
    data = bytearray(img.data)
    struct.pack_into("<Q", data, img.tables.relative_base - STEXT, STEXT + 0x1000)
    return SegmentedSpace([Segment(STEXT, len(data), _Bytes(bytes(data)))])


def test_no_tables_and_holes_end_in_one_line() -> None:
    img = build()
    img.data[img.tables.token_table - STEXT:img.tables.token_index - STEXT] = \
        bytes(img.tables.token_index - img.tables.token_table)
    # the image is followed by unmapped space up to the limit: read as holes, not an error
    assert "1 MB" in _refused(img)


def test_unreadable_image_is_one_line() -> None:
    empty = SegmentedSpace([])
    with pytest.raises(SymbolError, match="no kallsyms tables"):
        scan_kallsyms(empty, STEXT, limit=1 << 20)
    with pytest.raises(FaultError):
        empty.read(STEXT, 1)
