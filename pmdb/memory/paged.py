"""A virtual space over a physical one by a per-address translation: what every CPU's
kernel space shares (pmdb.memory.x86_64, pmdb.memory.aarch64).

A subclass says where one address lives (``translate``: physical address and the
bytes left before the rule or page changes); this turns that into chunks, merging
physically adjacent pieces, and reports a physical fault at its virtual address.
"""

from __future__ import annotations

from abc import abstractmethod

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace, Chunk

MASK64 = (1 << 64) - 1


class TranslatedSpace(AddressSpace):
    """An AddressSpace whose bytes are in ``self.phys`` where ``translate`` says."""

    phys: AddressSpace

    @abstractmethod
    def translate(self, addr: int) -> tuple[int, int]:
        """(physical address, bytes left in its page or region); FaultError when unmapped."""

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        chunks: list[Chunk] = []
        cur, left = addr & MASK64, n
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
