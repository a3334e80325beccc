"""Virtual spaces over a physical one, as every CPU's kernel space builds them.

``TranslatedSpace`` turns a per-address ``translate`` (physical address and bytes left
before the rule or page changes) into chunks, merging physically adjacent pieces, and
reports a physical fault at its virtual address (pmdb.memory.aarch64 uses it as is).
``PagedSpace`` adds the x86 walk over a table of levels (entry width and frame mask as
data) and a per-page-size cache of walks: pmdb.memory.x86_64 and pmdb.memory.i386 set
their levels, entry format and root, and supply ``translate`` (fast paths, then
``cached_walk``) and ``check`` (which addresses exist at all).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace, Chunk

_CACHE_LIMIT = 1 << 16
_PRESENT = 1 << 0
_PSE = 1 << 7  # a large page ends the walk at this level


MASK64 = (1 << 64) - 1


class TranslatedSpace(AddressSpace):
    """An AddressSpace whose bytes are in ``self.phys`` where ``translate`` says."""

    phys: AddressSpace
    addr_mask = MASK64      # where addresses wrap

    @abstractmethod
    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region); FaultError when unmapped."""

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        chunks: list[Chunk] = []
        cur, left = addr & self.addr_mask, n
        while left > 0:
            try:
                phys, room = self.translate(cur)
            except FaultError as err:
                raise FaultError(cur, left, err.reason) from None
            take = min(left, room)
            last = chunks[-1] if chunks else None
            if last is not None and last.offset + last.length == phys:
                chunks[-1] = Chunk(last.addr, last.length + take, self.phys, last.offset)
            else:
                chunks.append(Chunk(cur, take, self.phys, phys))
            cur += take
            left -= take
        return chunks

    def read(self, addr: int, n: int) -> bytes:
        """As AddressSpace.read, but a physical fault is reported at its virtual address."""
        if n <= 0:
            return b""
        cur = addr & self.addr_mask
        try:
            phys, room = self.translate(cur)
        except FaultError:
            room = 0            # the chunk walk below reports it
        if n <= room:           # within one page or region (a field, a pointer): one translation
            try:
                return self.phys.read(phys, n)
            except FaultError as err:
                raise self._physical_fault(err, cur, phys, n, addr, n) from None
        parts = []
        for c in self.mapping(addr, n):
            try:
                parts.append(self.phys.read(c.offset, c.length))
            except FaultError as err:
                raise self._physical_fault(err, c.addr, c.offset, c.length, addr, n) from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @staticmethod
    def _physical_fault(err: FaultError, vstart: int, pstart: int, length: int, addr: int, n: int) -> FaultError:
        """A fault of the physical read of [pstart, pstart+length) (virtual vstart), at its
        virtual address, for a read of n bytes at addr."""
        vaddr = vstart + (err.address - pstart if pstart <= err.address < pstart + length else 0)
        return FaultError(vaddr, n - (vaddr - addr),
                          f"physical {err.address:#x}: {err.reason or 'not in the dump'}")


class WalkCache:
    """The page frame of each page already walked, one bounded dict per page size: a page
    table is read once per page, not once per access."""

    def __init__(self, shifts: tuple[int, ...]) -> None:
        self._by_shift: dict[int, dict[int, int]] = {shift: {} for shift in shifts}

    def get(self, addr: int) -> tuple[int, int] | None:
        """(physical address, bytes left in its page) when addr's page was walked."""
        for shift, cache in self._by_shift.items():
            frame = cache.get(addr >> shift)
            if frame is not None:
                off = addr & ((1 << shift) - 1)
                return frame + off, (1 << shift) - off
        return None

    def put(self, addr: int, frame: int, shift: int) -> tuple[int, int]:
        """Remember addr's page (frame, 1 << shift bytes); what get() would now say."""
        cache = self._by_shift[shift]
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[addr >> shift] = frame
        off = addr & ((1 << shift) - 1)
        return frame + off, (1 << shift) - off

    def clear(self) -> None:
        for cache in self._by_shift.values():
            cache.clear()


@dataclass(frozen=True)
class Level:
    """One page-table level: its index bits are ``addr >> shift`` masked to ``bits``."""

    name: str
    shift: int
    bits: int = 9
    large: bool = False  # whether PSE here maps a page of 1 << shift bytes

    def index(self, addr: int) -> int:
        return (addr >> self.shift) & ((1 << self.bits) - 1)


@dataclass(frozen=True)
class Entry:
    """One page-table entry met on a walk, for ::vtop."""

    level: str
    address: int  # physical address of the entry itself
    value: int


class PagedSpace(TranslatedSpace):
    """A virtual space over ``phys`` whose addresses wrap at ``addr_mask``."""

    def __init__(self, phys: AddressSpace, ptr_size: int, shifts: tuple[int, ...], root: int,
                 levels: tuple[Level, ...], entry_size: int, entry_mask: int) -> None:
        super().__init__("little", ptr_size)
        self.phys = phys
        self.root = root  # physical address of the top-level table
        self.levels = levels
        self.entry_size = entry_size
        self.entry_mask = entry_mask  # the next table's or the page frame's address bits
        self.addr_mask = (1 << (8 * ptr_size)) - 1
        self._cache = WalkCache(shifts)

    def flush(self) -> None:
        """Forget cached walks (the caller changed what the tables say)."""
        self._cache.clear()

    @abstractmethod
    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region), or FaultError."""

    @abstractmethod
    def check(self, addr: int) -> None:
        """FaultError when addr cannot be translated at all (non-canonical, too wide)."""

    def _walk(self, addr: int) -> tuple[int, int, list[Entry]]:
        """(page frame, page shift, entries met) for addr, or FaultError naming the level."""
        self.check(addr)
        table = self.root
        entries: list[Entry] = []
        for level in self.levels:
            slot = table + level.index(addr) * self.entry_size
            try:
                value = self.phys.read_int(slot, self.entry_size)
            except FaultError as err:
                raise FaultError(addr, 1, f"{level.name} table at physical {table:#x} is not in the dump"
                                 f" ({err.reason})") from None
            entries.append(Entry(level.name, slot, value))
            if not value & _PRESENT:
                above = f" ({entries[-2].level} entry {entries[-2].value:#x})" if len(entries) > 1 else ""
                raise FaultError(addr, 1, f"no {level.name} entry for {addr:#x}{above}")
            if level.shift == 12 or (level.large and value & _PSE):
                frame = value & self.entry_mask & ~((1 << level.shift) - 1)
                return frame, level.shift, entries
            table = value & self.entry_mask
        raise AssertionError("the last level always ends the walk")

    def mappings(self, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """(virtual, physical, size) of every present page or large page that overlaps
        [lo, hi), in address order: what a search of all mapped memory walks. Tables the
        dump lacks are skipped; only present entries are descended into."""
        yield from self._mappings(self.root, 0, 0, lo, hi)

    def _mappings(self, table: int, depth: int, base: int, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        import numpy as np  # here, not at import: only a walk of every table needs it

        level = self.levels[depth]
        span, size = 1 << level.shift, self.entry_size
        try:
            raw = self.phys.read(table, (1 << level.bits) * size)
        except FaultError:
            return
        top = self.levels[0].shift + self.levels[0].bits        # bits a virtual address uses
        entries = np.frombuffer(raw, dtype=f"<u{size}")
        present = np.flatnonzero(entries & _PRESENT)
        if level.shift == 12:
            yield from self._leaf_runs(entries, present, self._virtual(base, top), lo, hi)
            return
        for i in present.tolist():
            partial = base | (i << level.shift)
            vaddr = self._virtual(partial, top)
            if vaddr + span <= lo or vaddr >= hi:
                continue
            value = int(entries[i])
            if level.large and value & _PSE:
                yield vaddr, value & self.entry_mask & ~(span - 1), span
            else:
                yield from self._mappings(value & self.entry_mask, depth + 1, partial, lo, hi)

    def _virtual(self, partial: int, top: int) -> int:
        """The address ``partial`` (table indices only) with the sign extension of its top bit."""
        return partial | (self.addr_mask & ~((1 << top) - 1)) if partial >> (top - 1) & 1 else partial

    def _leaf_runs(self, entries: Any, present: Any, vbase: int, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """The 4 KiB pages of one last-level table (``present``: the indices of its present
        entries; ``vbase``: the address of its first), as runs both virtually and physically
        contiguous: found as arrays, so a table of 512 mapped pages is a few yields, not 512."""
        import numpy as np

        first = (lo - vbase) >> 12 if lo > vbase else 0
        end = min(len(entries), -(-(hi - vbase) >> 12)) if hi > vbase else 0
        present = present[(present >= first) & (present < end)]
        if not len(present):
            return
        frames = entries[present] & entries.dtype.type(self.entry_mask & ~0xFFF)
        breaks = np.flatnonzero((np.diff(present) != 1) | (np.diff(frames) != 4096)) + 1
        starts = [0, *breaks.tolist()]
        ends = [*breaks.tolist(), len(present)]
        index, frame = present.tolist(), frames.tolist()
        for s, e in zip(starts, ends, strict=True):
            yield vbase + (index[s] << 12), frame[s], (e - s) << 12

    def walk_entries(self, addr: int) -> list[Entry]:
        """The entries a walk meets up to the one that ends it, present or not (for ::vtop
        of an address whose walk failed)."""
        entries: list[Entry] = []
        try:
            self.check(addr)
        except FaultError:
            return entries
        table = self.root
        for level in self.levels:
            slot = table + level.index(addr) * self.entry_size
            try:
                value = self.phys.read_int(slot, self.entry_size)
            except FaultError:
                break
            entries.append(Entry(level.name, slot, value))
            if not value & _PRESENT or (level.large and value & _PSE) or level.shift == 12:
                break
            table = value & self.entry_mask
        return entries

    def vtop(self, addr: int) -> tuple[int, list[Entry]]:
        """Walk the page tables (never a fast path): the physical address and every entry met."""
        page, shift, entries = self._walk(addr)
        return page + (addr & ((1 << shift) - 1)), entries

    def cached_walk(self, addr: int) -> tuple[int, int]:
        """translate() by the page tables, each page walked once."""
        hit = self._cache.get(addr)
        if hit is not None:
            return hit
        frame, shift, _ = self._walk(addr)
        return self._cache.put(addr, frame, shift)
