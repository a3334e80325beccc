"""Decoded kallsyms kept in pmdb's cache, so a second open of a kernel does not decode again.

Decoding ~100k names from the token table is the largest part of opening a kernel dump
(~60 ms of ~250). An entry holds the decoded names, type letters and addresses. It
follows the cache's rules for derived data:

- keyed by content: a hash of how the kallsyms tables are *stored* in the dump (the
  compressed pages, no decompression needed; memory.space.stored_digest), with the
  symbol count, the base and the tables' addresses. Decoding is a function of exactly
  that, so two dumps share an entry only when they would decode the same, and a damaged
  or hostile dump can only ever reach its own entry;
- validated when read: the entry is sealed by a checksum (a damaged file is never
  unmarshalled), its shape must match the count, and sample records and offsets, read
  from the dump itself, must decode to what it says; an entry that fails is removed and
  the tables are decoded again;
- written atomically (Cache.store), only after a decode that succeeded.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmdb.cache import Cache, sealed, unsealed
from pmdb.errors import PmdbError
from pmdb.memory.space import AddressSpace, stored_digest
from pmdb.symbols.kallsyms import (
    KallsymsSymbols,
    KallsymsTables,
    RecordStarts,
    decode_address,
    decode_record,
    no_cyclic_gc,
)

KIND = b"pmdbks04"      # bump the number when the payload's layout changes
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
        try:
            with no_cyclic_gc():
                typed, addrs, first, leads, samples = marshal.loads(data)
        except (ValueError, EOFError, TypeError):
            return None
        if not (isinstance(typed, list) and isinstance(addrs, list) and len(typed) == len(addrs) == self.count
                and isinstance(samples, list) and isinstance(first, dict)
                and leads == "".join(sorted({t[:1] for t in tokens if t}))):
            return None
        try:
            for i, start in samples:
                if not self._sample_ok(mem, tokens, i, start, typed[i], addrs[i]):
                    return None
            if any(typed[i] != name for name, i in first.items()):
                return None
        except (PmdbError, TypeError, ValueError, IndexError):
            return None
        return KallsymsSymbols.decoded(typed, addrs, first, leads)

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
        costs the decode again next time)."""
        typed = syms.typed_names()
        n = len(typed)
        if n != self.count:
            return
        picks = sorted({k * (n - 1) // max(SAMPLES - 1, 1) for k in range(SAMPLES)})
        payload: Any = (typed, syms.addresses(), syms.repeated(), syms.leads(),
                        [(i, starts[i]) for i in picks])
        self.cache.store(self.stem, sealed(KIND, marshal.dumps(payload)))
