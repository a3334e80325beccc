"""Decoded kallsyms kept in pmdb's cache, so a second open of a kernel does not decode again.

Decoding ~100k names from the token table is the largest part of opening a kernel dump
(~60 ms of ~250). An entry holds the decoded names as the one text name lookups read
(kallsyms.decode_text: each type letter and name between NULs) with the CRC of each name
they search (kallsyms.NameText), the addresses as an array of words (used as they are read,
never made into a list), whether they are in order, and samples to check it by. It follows
the cache's rules for derived data:

- keyed by content: a hash of how the kallsyms tables are *stored* in the dump (the
  compressed pages, no decompression needed; memory.space.stored_digest), with the
  symbol count, the base and the tables' addresses. Decoding is a function of exactly
  that, so two dumps share an entry only when they would decode the same, and a damaged
  or hostile dump can only ever reach its own entry;
- validated when read: the entry is sealed by a checksum (a damaged file is never
  unmarshalled), its shape must match the count (one record per address), and sample
  records and offsets, read from the dump itself, must decode to what it says at the index
  it says, and their CRCs be their names'; an entry that fails is removed and
  the tables are decoded again;
- written atomically (Cache.store), only after a decode that succeeded.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pmdb.cache import Cache, sealed_parts, unsealed
from pmdb.errors import PmdbError
from pmdb.lookup_memo import LookupMemo
from pmdb.memory.space import AddressSpace, stored_digest
from pmdb.symbols.kallsyms import (
    ADDRESS_TYPECODE,
    KallsymsSymbols,
    KallsymsTables,
    NameText,
    RecordStarts,
    decode_address,
    decode_record,
    name_crc,
)

KIND = b"pmdbks07"      # bump the number when the payload's layout changes
SAMPLES = 24            # records checked against the dump on every load


@dataclass
class Entry:
    """One kernel's kallsyms in the cache: where it is and what it must match."""

    cache: Cache
    stem: Path
    tables: KallsymsTables
    count: int
    base: int | None

    @classmethod
    def of(cls, cache: Cache, mem: AddressSpace, tables: KallsymsTables, count: int, base: int | None,
           names_end: int) -> Entry | None:
        """The entry for these tables, named by their stored content; None when that cannot
        be read (then nothing is cached and the tables are decoded as without a cache)."""
        h = hashlib.sha256(repr((KIND, count, base, tables)).encode())
        try:
            index = struct.unpack("<256H", mem.read(tables.token_index, 512))
            last = max(range(256), key=index.__getitem__)
            tail = mem.read(tables.token_table + index[last], 256).split(b"\0")[0]
            for addr, n in ((tables.names, names_end - tables.names), (tables.offsets, 4 * count),
                            (tables.token_index, 512), (tables.token_table, index[last] + len(tail) + 1)):
                h.update(stored_digest(mem, addr, n).encode())
        except PmdbError:
            return None
        return cls(cache, cache.path("kallsyms", f"names-{h.hexdigest()[:40]}"), tables, count, base)

    def memo(self) -> LookupMemo:
        """Where the names looked up in these tables are remembered (beside the entry)."""
        return LookupMemo(self.cache, self.cache.path("memo", f"kallsyms-{self.stem.name}"))

    def load(self, mem: AddressSpace, tokens: Sequence[str]) -> KallsymsSymbols | None:
        """The decoded symbols from the cache, when the entry is there and sound."""
        path = self.cache.find(self.stem)
        if path is None:
            return None
        try:
            data = unsealed(KIND, path.read_bytes())
        except OSError:
            return None
        found = self._checked(data, mem, tokens) if data is not None else None
        if found is None:
            with contextlib.suppress(OSError):
                path.unlink()              # damaged or wrong: the dump is the truth
        return found

    def _checked(self, data: memoryview, mem: AddressSpace, tokens: Sequence[str]) -> KallsymsSymbols | None:
        """The entry's symbols when its text holds one record per address and its samples
        (index, where the record starts in the dump's names table, where in the text) decode
        from the dump now to what the text says, at the index the text puts them."""
        try:
            text, raw_addrs, samples, hashes, in_order = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return None
        addrs = array(ADDRESS_TYPECODE)
        if not (isinstance(text, str) and isinstance(raw_addrs, bytes) and isinstance(samples, list)
                and isinstance(hashes, bytes) and isinstance(in_order, bool)
                and len(raw_addrs) == addrs.itemsize * self.count
                and len(hashes) == 4 * self.count and text.startswith("\0") and text.endswith("\0")):
            return None
        names = NameText(text, hashes)
        if names.records() != self.count:
            return None
        addrs.frombytes(raw_addrs)
        try:
            for i, start, at in samples:
                if not 0 < at < len(text) or text[at - 1] != "\0" or names.nuls_before(at) - 1 != i:
                    return None
                name = text[at:text.index("\0", at)]
                if hashes[4 * i:4 * i + 4] != name_crc(name[1:]):
                    return None
                if not self._sample_ok(mem, tokens, i, start, name, addrs[i]):
                    return None
        except (PmdbError, TypeError, ValueError, IndexError):
            return None
        return KallsymsSymbols.from_names(names, addrs, in_order)

    def _sample_ok(self, mem: AddressSpace, tokens: Sequence[str], i: int, start: int, name: str,
                   addr: int) -> bool:
        """Record ``i`` (at ``start`` in the names table) decodes to ``name``, and its offset
        to ``addr``, read from the dump now."""
        at = self.tables.names + start
        head = mem.read(at, 2)
        skip = 2 if head[0] & 0x80 else 1
        n = (head[0] & 0x7F) | (head[1] << 7) if skip == 2 else head[0]
        raw = mem.read(at, skip + n)
        (offset,) = struct.unpack("<i", mem.read(self.tables.offsets + 4 * i, 4))
        return decode_record(raw, tokens) == name and addr in decode_address(offset, i, self.base,
                                                                             self.tables.offsets)

    def store(self, syms: KallsymsSymbols, starts: RecordStarts) -> None:
        """Keep a decode that succeeded (best effort: a cache that cannot be written only
        costs the decode again next time). Samples are the records that start after evenly
        spaced points of the text, with their indices counted from its NULs."""
        text = syms.text()
        addrs = syms.addresses()
        if len(addrs) != self.count or not self.count:
            return
        samples = []
        nuls, counted = 0, 0
        for k in range(SAMPLES):
            at = text.find("\0", k * (len(text) - 1) // SAMPLES) + 1
            if not counted < at < len(text):
                continue
            nuls += text.count("\0", counted, at)
            counted = at
            samples.append((nuls - 1, starts[nuls - 1], at))
        try:
            kept = addrs if isinstance(addrs, array) and addrs.typecode == ADDRESS_TYPECODE else \
                array(ADDRESS_TYPECODE, addrs)
            raw_addrs = kept.tobytes()
        except OverflowError:
            return
        hashes = syms.name_hashes()
        entry = (text, raw_addrs, samples, hashes, syms.in_order_addresses())
        self.cache.store(self.stem, sealed_parts(KIND, [marshal.dumps(entry)]))
