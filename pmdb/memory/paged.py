"""What every page-table-walking kernel space shares: a per-page-size cache of walks, and
``mapping``/``read`` over the physical space with faults reported at virtual addresses.

A CPU's space (pmdb.memory.x86_64, pmdb.memory.i386) supplies ``translate`` (its fast
paths, then ``cached_walk``) and ``_walk`` (its table format).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace, Chunk

_CACHE_LIMIT = 1 << 16


class PagedSpace(AddressSpace):
    """A virtual space over ``phys`` whose addresses wrap at ``addr_mask``."""

    def __init__(self, phys: AddressSpace, ptr_size: int, shifts: tuple[int, ...]) -> None:
        super().__init__("little", ptr_size)
        self.phys = phys
        self.addr_mask = (1 << (8 * ptr_size)) - 1
        # one cache per page size, keyed by vaddr >> shift, holding the page frame
        self._cache: dict[int, dict[int, int]] = {shift: {} for shift in shifts}

    def flush(self) -> None:
        """Forget cached walks (the caller changed what the tables say)."""
        for cache in self._cache.values():
            cache.clear()

    @abstractmethod
    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region), or FaultError."""

    @abstractmethod
    def _walk(self, addr: int) -> tuple[int, int, list[Any]]:
        """(page frame, page shift, entries met) for addr, or FaultError naming the level."""

    def vtop(self, addr: int) -> tuple[int, list[Any]]:
        """Walk the page tables (never a fast path): the physical address and every entry met."""
        page, shift, entries = self._walk(addr)
        return page + (addr & ((1 << shift) - 1)), entries

    def cached_walk(self, addr: int) -> tuple[int, int]:
        """translate() by the page tables, each page walked once."""
        for shift, cache in self._cache.items():
            frame = cache.get(addr >> shift)
            if frame is not None:
                off = addr & ((1 << shift) - 1)
                return frame + off, (1 << shift) - off
        frame, shift, _ = self._walk(addr)
        cache = self._cache[shift]
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[addr >> shift] = frame
        off = addr & ((1 << shift) - 1)
        return frame + off, (1 << shift) - off

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
        parts = []
        for c in self.mapping(addr, n):
            try:
                parts.append(self.phys.read(c.offset, c.length))
            except FaultError as err:
                vaddr = c.addr + (err.address - c.offset if c.offset <= err.address < c.offset + c.length
                                  else 0)
                raise FaultError(vaddr, n - (vaddr - addr),
                                 f"physical {err.address:#x}: {err.reason or 'not in the dump'}") from None
        return parts[0] if len(parts) == 1 else b"".join(parts)
