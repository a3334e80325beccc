"""The kernel's own symbol table (kallsyms), decoded from the dump.

Since Linux 6.0 VMCOREINFO names the kallsyms arrays, so a vmcore carries its
symbol table without a vmlinux; before, kallsyms_scan finds them in the image. The names are a stream of length-prefixed
records whose bytes index a 256-entry token table; the first expanded
character is the nm-style type letter. Addresses are 32-bit offsets, in one
of three encodings (newest first):

- Linux 7.0 ("kallsyms: Get rid of kallsyms relative base"): place-relative,
  each offset counts from its own slot in ``kallsyms_offsets``; VMCOREINFO no
  longer names ``kallsyms_relative_base``.
- before: from ``kallsyms_relative_base`` (CONFIG_KALLSYMS_BASE_RELATIVE);
- with CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64 SMP, until 6.11) a
  non-negative offset is an absolute per-CPU offset and a negative one counts
  down from base - 1.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import itertools
import marshal
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from pmdb import forked
from pmdb.cache import Cache
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.lookup_memo import LookupMemo
from pmdb.memory.space import AddressSpace
from pmdb.symbols.table import Symbol

_MAX_SYMS = 4_000_000
_MAX_NAMES_BLOB = 64 << 20
_MAX_SIZE = 16 << 20
_PERCPU_LIMIT = 1 << 32  # absolute per-CPU offsets are small; kernel addresses are not  # a gap larger than this is between regions, not a symbol's size


@dataclass(frozen=True)
class KallsymsTables:
    """Where the kallsyms arrays live (kernel virtual addresses)."""

    names: int
    num_syms: int
    token_table: int
    token_index: int
    offsets: int
    relative_base: int | None     # None: place-relative offsets (Linux 7.0+)

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo) -> KallsymsTables:
        """The addresses VMCOREINFO gives (Linux 6.0+); SymbolError on an older kernel."""
        try:
            names, count, tokens, index, offsets = (info.symbol(f"kallsyms_{n}") for n in
                                                    ("names", "num_syms", "token_table", "token_index",
                                                     "offsets"))
        except SymbolError as err:
            raise SymbolError(f"{err}: kallsyms needs Linux 6.0 or later, or a vmlinux") from None
        base = info.symbols.get("kallsyms_relative_base")   # gone in 7.0
        return cls(names, count, tokens, index, offsets, base)


def _kind_and_binding(letter: str) -> tuple[str, str]:
    """nm's letter → (kind, binding); W/V are weak functions/objects."""
    low = letter.lower()
    if low in "tw":
        kind = "func"
    elif low in "dbrv":
        kind = "object"
    else:
        kind = "other"
    if low in "wv":
        return kind, "weak"
    return kind, "local" if letter.islower() else "global"


_LETTERS = {chr(c): _kind_and_binding(chr(c)) for c in range(0x21, 0x7F)}
_OTHER = ("other", "global")
# Symbols are built by filling __dict__ (see _symbols) unless the class ever gets slots
_SLOTTED = not hasattr(Symbol("", 0), "__dict__")


def read_tokens(mem: AddressSpace, tables: KallsymsTables) -> list[str]:
    """The 256 expansions, each found through kallsyms_token_index (as text: joining str
    pieces and never decoding whole names is the cheaper way to build 150k names)."""
    index = struct.unpack("<256H", mem.read(tables.token_index, 512))
    size = max(index) + 256  # the last token is short; its NUL ends it
    blob = mem.read(tables.token_table, size) if size <= 0x10000 else b""
    if not blob:
        raise FormatError(f"kallsyms token index is corrupt (offset {max(index):#x})")
    tokens = []
    for off in index:
        end = blob.find(b"\0", off)
        if end < 0:
            raise FormatError(f"kallsyms token at {tables.token_table + off:#x} is not terminated")
        tokens.append(blob[off:end].decode("ascii", errors="replace"))
    return tokens


def decode_names(blob: bytes, count: int, tokens: Sequence[str]) -> list[str]:
    """Expand ``count`` records, each name with its type letter first."""
    if count <= 0:
        return []
    return decode_text(blob, count, tokens)[0][1:-1].split("\0")


def decode_typed_names(blob: bytes, count: int, tokens: Sequence[str]) -> tuple[str, list[str]]:
    """(each record's type letter, the names without it)."""
    return split_letters(decode_names(blob, count, tokens))


def split_letters(typed: list[str]) -> tuple[str, list[str]]:
    """(each record's type letter, the names without it) of typed names ("?" for an empty record)."""
    try:
        return "".join(map(_FIRST_CHAR, typed)), list(map(_BUT_FIRST_CHAR, typed))
    except IndexError:  # an empty record (a damaged table): "?" is its letter
        return "".join([n[:1] or "?" for n in typed]), [n[1:] for n in typed]


@dataclass(frozen=True)
class RecordStarts:
    """Where each record starts in the names table (its first length byte)."""

    heads: list[int]      # each record's last length byte
    seconds: list[int]    # the first byte of two-byte lengths, in order

    def __getitem__(self, i: int) -> int:
        head = self.heads[i]
        j = bisect.bisect_left(self.seconds, head - 1)
        return head - 1 if j < len(self.seconds) and self.seconds[j] == head - 1 else head


def decode_text(blob: bytes, count: int, tokens: Sequence[str]) -> tuple[str, RecordStarts]:
    """(the records as one text, each typed name, type letter first, between NULs:
    ``"\0Tname\0tother\0"``; and where each record starts in ``blob``, which a cache of the
    text samples to check itself against the dump). A name is found in the text at C speed
    (str.find), so no list or dict of ~100k names is built to look a few dozen up."""
    heads, seconds, end = _records(blob, count)
    return _text_of(blob, 0, end, heads, seconds, tokens) + "\0", RecordStarts(heads, seconds)


_SPLIT_RECORDS = 20_000    # below this a second process costs more than half the work saves


def decode_text_and_crcs(blob: bytes, count: int, tokens: Sequence[str]) -> tuple[str, RecordStarts, bytes]:
    """decode_text's, and the names' CRCs (NameText.hashes), the second half of both made
    by a forked child (pmdb.forked) while this process makes the first: they are the bulk
    of a first decode (~48 of ~61 ms on the fixture; the rest is the pass over the length
    bytes that finds where the halves meet), and a record's text and CRC depend on its bytes
    alone.
    The child's half is the very one this process would make; without a child (one CPU,
    or none to spare from a vmlinux's head start; threads running; a child that failed) it
    is made here."""
    heads, seconds, end = _records(blob, count)
    starts = RecordStarts(heads, seconds)
    half = count // 2
    if count < _SPLIT_RECORDS or forked.running() >= forked.cpus() - 1:   # no CPU to spare
        text = _text_of(blob, 0, end, heads, seconds, tokens) + "\0"
        return text, starts, name_crcs(text)
    cut = starts[half]                      # where record ``half`` starts in the blob
    later_heads, later_seconds = heads[half:], seconds[bisect.bisect_left(seconds, cut):]

    def second_half() -> tuple[str, bytes]:
        text = _text_of(blob, cut, end, later_heads, later_seconds, tokens) + "\0"
        return text, name_crcs(text)

    child = forked.start(lambda: marshal.dumps(second_half()))
    first = _text_of(blob, 0, cut, heads[:half], seconds[:len(seconds) - len(later_seconds)], tokens)
    first_crcs = name_crcs(first + "\0")
    got = child.result() if child is not None else None
    try:
        later, later_crcs = marshal.loads(got) if got is not None else (None, None)
    except (ValueError, EOFError, TypeError):
        later = later_crcs = None
    if not isinstance(later, str) or not isinstance(later_crcs, bytes):
        later, later_crcs = second_half()
    return first + later, starts, first_crcs + later_crcs


def _text_of(blob: bytes, lo: int, hi: int, heads: Sequence[int], seconds: Sequence[int],
             tokens: Sequence[str]) -> str:
    """The records in blob[lo:hi] (whose last length bytes are ``heads``, and the first of
    their two-byte lengths ``seconds``) as text, each after a NUL: every byte expanded as its
    token, a record's last length byte made a NUL, the first of two dropped."""
    pieces = list(map(tokens.__getitem__, blob[lo:hi]))
    at_heads: Iterable[int] = map(operator.sub, heads, itertools.repeat(lo)) if lo else heads
    at_seconds: Iterable[int] = map(operator.sub, seconds, itertools.repeat(lo)) if lo else seconds
    list(map(pieces.__setitem__, at_heads, itertools.repeat("\0")))
    list(map(pieces.__setitem__, at_seconds, itertools.repeat("")))
    return "".join(pieces)


def name_crcs(text: str) -> bytes:
    """NameText.hashes of a text of records: the CRC-32 of each name (its type letter left
    out, UTF-8), 4 little-endian bytes a record."""
    # (split whole and the two empty ends dropped: text[1:-1] would copy 2 MB first)
    parts = text.encode().split(b"\0")[1:-1]
    crcs = array("I", map(zlib.crc32, map(_BUT_FIRST_CHAR, parts)))
    if sys.byteorder == "big":
        crcs.byteswap()
    return crcs.tobytes()


_CHUNK = 4096          # text characters per entry of a NameText's table of NUL counts
_LOOKUPS_KEPT = 4096   # answers of name lookups kept per decoding


def name_crc(name: str) -> bytes:
    """A name's entry in NameText.hashes: the CRC-32 of its UTF-8 bytes, little-endian."""
    return zlib.crc32(name.encode()).to_bytes(4, "little")


class NameText:
    """The records as one text (decode_text's), the CRC-32 of each record's name, and,
    built on first use with one pass over the text, how many NULs precede each 4 KiB of
    it (a record's index from its place, or its place from its index, is a short count).

    A name is looked up by its CRC in the array of CRCs (4 bytes a record, a sixth of the
    text; bytes.find at C speed, ~0.1 ms), each hit checked against the record's own text:
    a full search of the 2 MB text cost ~1 ms a name, and an open asks for two dozen. The
    array is made at C speed (split, slice, crc32 over maps: ~15 ms) once per decoding and
    kept in the cache entry with the text."""

    def __init__(self, text: str, hashes: bytes | None = None) -> None:
        self.text = text
        self._before: list[int] | None = None
        self._hashes = hashes

    def _nul_table(self) -> list[int]:
        if self._before is None:
            text = self.text
            self._before = list(itertools.accumulate(
                (text.count("\0", k, k + _CHUNK) for k in range(0, len(text), _CHUNK)), initial=0))
        return self._before

    def nuls_before(self, at: int) -> int:
        """How many NULs text[:at] holds."""
        k = at // _CHUNK
        return self._nul_table()[k] + self.text.count("\0", k * _CHUNK, at)

    def records(self) -> int:
        """How many records the text holds (one fewer than its NULs)."""
        return self.nuls_before(len(self.text)) - 1

    def record(self, i: int) -> str:
        """Record ``i``'s typed name: the text after its (i+1)-th NUL."""
        if not 0 <= i < self.records():
            raise IndexError(f"no record {i}")
        before, text = self._nul_table(), self.text
        k = bisect.bisect_left(before, i + 1) - 1     # the chunk holding that NUL
        at = k * _CHUNK - 1
        for _ in range(i + 1 - before[k]):
            at = text.index("\0", at + 1)
        return text[at + 1:text.index("\0", at + 1)]

    def hashes(self) -> bytes:
        """The CRC-32 of each record's name (its type letter left out, UTF-8), as 4
        little-endian bytes a record, in record order."""
        if self._hashes is None:
            self._hashes = name_crcs(self.text) if self.records() > 0 else b""
        return self._hashes

    def named(self, name: str) -> list[tuple[int, str]]:
        """(index, typed name) of the records named ``name`` with whatever type letter, in
        order."""
        if not name or "\0" in name:
            return []
        hashes = self.hashes()
        needle = name_crc(name)
        found: list[tuple[int, str]] = []
        at = hashes.find(needle)
        while at >= 0:
            if at % 4:                  # the bytes straddle two records' CRCs
                at = hashes.find(needle, at + 1)
                continue
            typed = self.record(at // 4)
            if typed[1:] == name:       # not a CRC that only collides
                found.append((at // 4, typed))
            at = hashes.find(needle, at + 4)
        return found


_FIRST_CHAR = operator.itemgetter(0)
_BUT_FIRST_CHAR = operator.itemgetter(slice(1, None))


def _records(blob: bytes, count: int) -> tuple[list[int], list[int], int]:
    """(each record's last length byte, the first bytes of two-byte lengths, where the last
    record ends). A length byte with bit 7 set takes a second byte (6.1+). The one Python
    loop of decoding."""
    heads: list[int] = []
    seconds: list[int] = []
    add = heads.append
    pos = 0
    try:
        for _ in range(count):
            n = blob[pos]
            if n & 0x80:
                seconds.append(pos)
                pos += 1
                n = (n & 0x7F) | (blob[pos] << 7)
            add(pos)
            pos += 1 + n
    except IndexError:
        raise FormatError(f"kallsyms names end after {len(heads)} of {count} symbols") from None
    if pos > len(blob):
        raise FormatError(f"kallsyms names run past their table ({pos} > {len(blob)} bytes)")
    return heads, seconds, pos


def decode_record(raw: bytes, tokens: Sequence[str]) -> str | None:
    """The one record at the start of ``raw`` (type letter first); None when ``raw`` is
    shorter than the record says."""
    if not raw:
        return None
    n, skip = raw[0], 1
    if n & 0x80:
        if len(raw) < 2:
            return None
        n, skip = (n & 0x7F) | (raw[1] << 7), 2
    body = raw[skip:skip + n]
    return "".join(map(tokens.__getitem__, body)) if len(body) == n else None


def decode_address(o: int, i: int, base: int | None, at: int) -> set[int]:
    """What decode_addresses may make of the one offset ``o`` at index ``i``: which rule
    applies to a non-negative offset depends on the whole array."""
    if base is None:
        return {(at + 4 * i + o) & ((1 << 64) - 1)}
    if o < 0:
        return {base - 1 - o}
    return {base + o, o}


def decode_addresses(raw: bytes, count: int, base: int | None, at: int = 0) -> Sequence[int]:
    """Runtime addresses from the offsets array read at ``at`` (see the module docstring
    for the rules); ``base`` None means place-relative. An array of words where they fit (no
    94k int objects until they are asked for), else a list."""
    offs = array("i")
    offs.frombytes(memoryview(raw)[:4 * count])
    if len(offs) != count:
        raise FormatError(f"kallsyms offsets: {len(offs)} of {count} read")
    if base is not None and sys.byteorder == "little" and 0 <= base < 1 << 64:
        found = _base_relative(bytes(memoryview(raw)[:4 * count]), base)
        if found is not None:
            return found
    if sys.byteorder == "big":
        offs.byteswap()
    if base is None:
        mask = (1 << 64) - 1
        return [(at + 4 * i + o) & mask for i, o in enumerate(offs)]
    if min(offs, default=0) >= 0:
        # no negative offset: plain base-relative (unsigned) offsets
        return [base + o for o in offs]
    top = base - 1
    return [o if o >= 0 else top - o for o in offs]


ADDRESS_TYPECODE = "Q"      # addresses are kept as an array of unsigned 64-bit words
_HIGH_BYTES = [bytes(range(b, 256)) for b in range(257)]    # [b]: the high bytes from b up


def _base_relative(raw: bytes, base: int) -> array | None:
    """decode_addresses of base-relative offsets as a kernel's build lays them out, at C
    speed; None for any other layout (then the rules are applied one offset at a time).

    The test is on each offset's high byte (its sign, and a bound that keeps every address
    below 2**64), and the layouts are: no negative offset (base + offset), or absolute
    per-CPU offsets first (the lowest addresses, as they are, sorted first) and only
    negative ones after them (base - 1 - offset)."""
    high = raw[3::4]
    # how many are non-negative: where the first negative one is, if they all come first
    first_negative = len(high.translate(None, _HIGH_BYTES[0x80]))
    if first_negative == len(high):
        room = (1 << 64) - base            # base + u < 2**64 for u < room
        if room <= 1 << 32 and high.translate(None, _HIGH_BYTES[0][:room >> 24]):
            return None
        return _lanes(raw, base, 1)
    if high[:first_negative].translate(None, _HIGH_BYTES[0][:0x80]):
        return None                         # not per-CPU offsets first, then only negative ones
    # base - 1 - o == (base - 1 + 2**32) - u for u, o's unsigned bits: below 2**64 for every
    # u above base - 1 + 2**32 - 2**64
    least = base - 1 + (1 << 32) - (1 << 64) + 1
    if least > 0 and high[first_negative:].translate(None, _HIGH_BYTES[(least >> 24) + 1]):
        return None
    out = array(ADDRESS_TYPECODE, struct.unpack(f"<{first_negative}i", raw[:4 * first_negative]))
    out.extend(_lanes(raw[4 * first_negative:], base - 1 + (1 << 32), -1))
    return out


def _lanes(raw: bytes, constant: int, sign: int) -> array:
    """``constant + sign * u`` for the unsigned 32-bit value ``u`` of each 4 bytes of ``raw``,
    as 64-bit words, at C speed (~3 ms for 94k, against ~10 for a loop): the words are
    spread into the 64-bit digits of one integer, and one multiplication and one addition
    of integers a few hundred kilobytes long do every lane at once. The caller makes sure
    every result lies in [0, 2**64): an integer has but one set of digits, so the sum's
    digits are those results, whatever carries its parts had. (A little-endian host's layout.)"""
    n = len(raw) // 4
    spread = bytearray(8 * n)
    memoryview(spread).cast("I")[0::2] = memoryview(raw).cast("I")
    total = constant * int.from_bytes(_ONE * n, "little") + sign * int.from_bytes(spread, "little")
    out = array(ADDRESS_TYPECODE)
    out.frombytes(total.to_bytes(8 * n, "little"))
    return out


_ONE = (1).to_bytes(8, "little")


def _names_end(tables: KallsymsTables) -> int:
    """The first kallsyms array after the names blob bounds it (the order changed in 6.2/6.4)."""
    after = [a for a in (tables.token_table, tables.token_index, tables.offsets,
                         tables.relative_base, tables.num_syms) if a is not None and a > tables.names]
    end = min(after) if after else tables.names + _MAX_NAMES_BLOB
    return min(end, tables.names + _MAX_NAMES_BLOB)


def load_kallsyms(mem: AddressSpace, tables: KallsymsTables, cache: Cache | None = None) -> KallsymsSymbols:
    """kallsyms as a lazy ``SymbolSource``: the tables are read now, names decoded on first use.

    With ``cache``, names and addresses another open of the same tables decoded are read
    from there instead (kallsyms_cache: keyed by how the tables are stored, checked against
    the dump), and a first decode is written there; the names looked up are remembered
    for the next session (pmdb.lookup_memo)."""
    try:
        count = mem.u32(tables.num_syms)
        if not 0 < count <= _MAX_SYMS:
            raise FormatError(f"kallsyms_num_syms is {count}: not a symbol count")
        tokens = read_tokens(mem, tables)
        base = mem.ptr(tables.relative_base) if tables.relative_base is not None else None
        entry = None
        if cache is not None:
            from pmdb.symbols import kallsyms_cache

            entry = kallsyms_cache.Entry.of(cache, mem, tables, count, base, _names_end(tables))
            found = entry.load(mem, tokens) if entry is not None else None
            if found is not None:
                found.memo = entry.memo() if entry is not None else None
                return found
        blob = mem.read(tables.names, _names_end(tables) - tables.names)
        addrs = decode_addresses(mem.read(tables.offsets, 4 * count), count, base, tables.offsets)
    except FaultError as err:
        raise FormatError(f"kallsyms tables are not readable: {err}") from None
    syms = KallsymsSymbols(blob, count, tokens, addrs, on_decoded=entry.store if entry is not None else None)
    syms.memo = entry.memo() if entry is not None else None
    return syms


def read_kallsyms(mem: AddressSpace, tables: KallsymsTables) -> list[Symbol]:
    """Every kallsyms symbol of vmlinux, with sizes from the next higher address."""
    return load_kallsyms(mem, tables).all_symbols()


# what a KallsymsSymbols calls once it has decoded its names: itself and where each record
# starts in the names table
OnDecoded = Callable[["KallsymsSymbols", "RecordStarts"], None]


class _Decoded:
    """One decoding: the text (decode_text) with its name CRCs, where records start, the
    names looked up and their answers, and the list of typed names split from the text when
    something needs them all (made once, then shared)."""

    def __init__(self, text: str, starts: RecordStarts | None, crcs: bytes | None = None) -> None:
        self.names = NameText(text, crcs)
        self.starts = starts
        self.typed: list[str] | None = None
        self.looked_up: dict[str, list[tuple[int, str]]] = {}   # name -> NameText.named's answer


# The last decodings, by the content they came from: a process that opens many dumps of one
# kernel build (triage, scripts, the fuzz campaign) decodes its names once, even without a
# cache directory. Shared, so never changed in place (what is derived from the text only
# filled in).
_DECODED: dict[tuple[bytes, int, tuple[str, ...]], _Decoded] = {}
_DECODED_KEPT = 2


class KallsymsSymbols:
    """kallsyms kept as its tables: a ``SymbolSource`` for SymbolTable.add_source.

    Decoding ~100k names and making as many Symbols is most of a kernel dump's open time,
    and a session asks for a few dozen names: on the first name lookup the names are
    expanded at once into one text (decode_text) and each lookup finds its name's CRC
    (NameText.named); a list of the names is split from the text only when a symbol is
    made that no lookup found, or all are asked for; sizes on the first symbol made;
    Symbols one at a time.
    """

    def __init__(self, blob: bytes, count: int, tokens: Sequence[str], addrs: Sequence[int],
                 on_decoded: OnDecoded | None = None) -> None:
        self._blob = blob
        self._count = count
        self._tokens = tokens
        self._addrs = addrs
        self._on_decoded = on_decoded
        self._decoded: _Decoded | None = None
        self._broken: FormatError | None = None
        self._names: list[str] | None = None      # without their letters, made when asked for
        self._letters: str | None = None
        self._found: dict[int, str] = {}          # index -> typed name, of records lookups found
        self._sizes: list[int] | None = None
        self._sorted: bool | None = None
        self.memo: LookupMemo | None = None       # remembered lookups, when there is a cache

    @classmethod
    def from_names(cls, names: NameText, addrs: Sequence[int], in_order: bool | None = None) -> KallsymsSymbols:
        """kallsyms whose names are already decoded (read from the cache, which checked
        that ``names`` holds one record per address), and, when known, whether the
        addresses are in order (in_order_addresses)."""
        syms = cls(b"", len(addrs), (), addrs)
        syms._decoded = _Decoded(names.text, None)
        syms._decoded.names = names
        syms._sorted = in_order
        return syms

    def __len__(self) -> int:
        return self._count

    def addresses(self) -> Sequence[int]:
        return self._addrs

    def in_order_addresses(self) -> bool:
        """Whether the addresses never decrease (they do not, in a kernel as built: checked
        once, ~2 ms, and kept in the cache)."""
        if self._sorted is None:
            addrs = self._addrs
            self._sorted = all(map(operator.le, addrs, itertools.islice(addrs, 1, None)))
        return self._sorted

    def letters(self) -> str:
        """Each symbol's nm type letter (decodes the names)."""
        if self._letters is None:
            self._letters, self._names = split_letters(self.typed_names())
        return self._letters

    def sizes(self) -> list[int]:
        if self._sizes is None:
            addrs = self._addrs
            self._sizes = _sorted_sizes(addrs) if self.in_order_addresses() else _sizes(addrs)
        return self._sizes

    def all_names(self) -> list[str]:
        if self._names is None:
            self.letters()
        assert self._names is not None
        return self._names

    def text(self) -> str:
        """The records as one text (decode_text), decoded on first use."""
        return self._decoding().names.text

    def name_hashes(self) -> bytes:
        """The CRC of each record's name (NameText.hashes), made on first use."""
        return self._decoding().names.hashes()

    def typed_names(self) -> list[str]:
        """Each record as decoded: its type letter, then its name."""
        decoded = self._decoding()
        if decoded.typed is None:
            typed = decoded.names.text[1:-1].split("\0") if self._count else []
            if len(typed) != self._count:
                raise FormatError(f"kallsyms names decode to {len(typed)} records, not {self._count}")
            decoded.typed = typed
        return decoded.typed

    def _decoding(self) -> _Decoded:
        if self._decoded is None:
            if self._broken is not None:
                raise self._broken  # a damaged stream is decoded (and fails) once, not per lookup
            key = (hashlib.blake2b(self._blob, digest_size=16).digest(), self._count, tuple(self._tokens))
            known = _DECODED.get(key)
            if known is None:
                try:
                    text, starts, crcs = decode_text_and_crcs(self._blob, self._count, self._tokens)
                except FormatError as err:
                    self._broken = err
                    raise
                known = _DECODED[key] = _Decoded(text, starts, crcs)
                while len(_DECODED) > _DECODED_KEPT:
                    _DECODED.pop(next(iter(_DECODED)))
            self._decoded = known
            if self._on_decoded is not None and known.starts is not None:
                self._on_decoded(self, known.starts)
            self._blob = b""          # decoded for good: the raw table is not needed again
        return self._decoded

    def indices_named(self, name: str) -> list[int]:
        decoded = self._decoding()
        found = decoded.looked_up.get(name)
        if found is None:
            if len(decoded.looked_up) >= _LOOKUPS_KEPT:
                decoded.looked_up.clear()
            found = decoded.looked_up[name] = self._remembered(decoded.names, name)
        elif self.memo is not None:       # answered for another target of this process
            self.memo.put(name, tuple(i for i, _ in found))
        self._found.update(found)
        return [i for i, _ in found]

    def _remembered(self, names: NameText, name: str) -> list[tuple[int, str]]:
        """NameText.named's answer, through the memo when there is one: remembered records
        that are still called name answer without the search of every CRC, else the search
        does (and is remembered)."""
        memo = self.memo
        if memo is None:
            return names.named(name)
        answer = memo.get(name)
        if answer is not None:
            try:
                found = [(i, names.record(i)) for i in answer]
            except IndexError:
                found = None
            if found is not None and all(typed[1:] == name for _, typed in found):
                return found
        found = names.named(name)
        memo.put(name, tuple(i for i, _ in found))
        return found

    def close(self) -> None:
        """Keep the names this session looked up for the next (pmdb.lookup_memo)."""
        if self.memo is not None:
            self.memo.save()

    def symbol(self, i: int) -> Symbol:
        typed = self._found.get(i) or self.typed_names()[i]
        letter, name = typed[:1] or "?", typed[1:]
        addr = self._addrs[i]
        kind, module, binding = _classify(letter, addr)
        return Symbol(name, addr, self._size(i), kind, module, binding, letter)

    def all_symbols(self) -> list[Symbol]:
        with no_cyclic_gc():
            return _symbols(self.all_names(), self.letters(), self._addrs, self.sizes())

    def _size(self, i: int) -> int:
        """One symbol's size without sizing them all, when the addresses are in order (they
        are: kallsyms is sorted when the kernel is built)."""
        if self._sizes is not None:
            return self._sizes[i]
        addrs = self._addrs
        if not self.in_order_addresses():
            return self.sizes()[i]
        j = bisect.bisect_right(addrs, addrs[i])
        if j < len(addrs) and addrs[j] - addrs[i] <= _MAX_SIZE:
            return addrs[j] - addrs[i]
        return 0


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cycle collector: ~150k acyclic objects would set off full collections
    that cost as much as building them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _sizes(addrs: Sequence[int]) -> list[int]:
    """Each symbol's distance to the next higher address (0 for the last, or across regions),
    of addresses out of order (_sorted_sizes is for those in order)."""
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    sizes = [0] * len(addrs)
    higher = last = None  # higher: the next address strictly above the current one
    for i in reversed(order):
        a = addrs[i]
        if last is not None and a < last:
            higher = last
        last = a
        if higher is not None and higher - a <= _MAX_SIZE:
            sizes[i] = higher - a
    return sizes


def _sorted_sizes(addrs: Sequence[int]) -> list[int]:
    """_sizes of addresses already in order (kallsyms is sorted when the kernel is built):
    the gaps at C speed; only symbols sharing an address (aliases) take a Python step."""
    gaps = list(map(operator.sub, itertools.islice(addrs, 1, None), addrs))
    gaps.append(0)
    for i in range(len(gaps) - 2, -1, -1):
        if not gaps[i]:             # an alias of the next symbol: its size
            gaps[i] = gaps[i + 1]
    return [g if g <= _MAX_SIZE else 0 for g in gaps]


def _symbols(names: list[str], letters: str, addrs: Sequence[int], sizes: list[int]) -> list[Symbol]:
    if _SLOTTED:
        return [Symbol(name, addr, size, *_classify(letter, addr), letter)
                for name, letter, addr, size in zip(names, letters, addrs, sizes, strict=True)]
    out = []
    new = Symbol.__new__
    setattr_ = object.__setattr__
    kinds = _LETTERS
    for name, letter, addr, size in zip(names, letters, addrs, sizes, strict=True):
        kind, binding = kinds.get(letter, _OTHER)
        if kind == "other":
            kind, _, binding = _classify(letter, addr)
        sym = new(Symbol)
        # a frozen dataclass's __init__ costs ~1.5x this for 150k symbols
        setattr_(sym, "__dict__", {"name": name, "addr": addr, "size": size, "kind": kind,
                                   "module": None, "binding": binding, "letter": letter})
        out.append(sym)
    return out


def _classify(letter: str, addr: int) -> tuple[str, None, str]:
    """(kind, module, binding) for a type letter."""
    kind, binding = _LETTERS.get(letter, _OTHER)
    if kind == "other" and addr < _PERCPU_LIMIT and letter in ("A", "a"):
        kind = "object"  # an absolute per-CPU offset: a per-CPU variable
    return kind, None, binding
