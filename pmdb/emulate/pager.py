"""DemandPager: the emulated CPU's memory, copy-on-write over a target's memory.

Nothing is copied until the code touches it: the first access to a page copies
that page in from the parent space (the dump), applies the configured patches to
it, and keeps it. Writes change only the copy, so the dump is never modified.
The pager is itself an AddressSpace, so an EmulatedTarget's dcmds read the
emulated state through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace, Chunk


@dataclass(frozen=True)
class Patch:
    """Bytes laid over memory as its page comes in (the dump itself stays untouched)."""

    addr: int
    data: bytes


class _PageSource:
    """One page as a ByteSource, so the generic AddressSpace.read serves the pager."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.buf[offset:offset + n])


class DemandPager(AddressSpace):
    """Pages copied in from ``parent`` on first touch; see the module docstring."""

    def __init__(self, parent: AddressSpace, page_size: int, patches: Sequence[Patch] = (),
                 byteorder: str = "little", ptr_size: int | None = None) -> None:
        super().__init__(byteorder, ptr_size or parent.ptr_size)
        if page_size & (page_size - 1):
            raise ValueError("page size must be a power of two")
        self.parent = parent
        self.page_size = page_size
        self.mask = ~(page_size - 1)
        self.patches: list[Patch] = []
        self.pages: dict[int, bytearray] = {}
        self.paged_in: list[int] = []              # pages from the parent, in order of first touch
        self.allocated: list[int] = []             # zero pages made up for (not from) the dump
        self.writes: list[tuple[int, bytes]] = []  # what the code wrote, in order
        self.on_new_page: Callable[[int, bytearray], None] | None = None  # an engine maps it
        self.on_write: Callable[[int, int], None] | None = None           # code-cache invalidation
        for p in patches:
            self.add_patch(p)

    # -- pages -----------------------------------------------------------------------

    def page(self, addr: int) -> bytearray:
        """The page holding addr, copied in (and patched) on first touch."""
        base = addr & self.mask
        buf = self.pages.get(base)
        if buf is not None:
            return buf
        try:
            data = self.parent.read(base, self.page_size)
        except FaultError as err:
            raise FaultError(addr, 1, f"page {base:#x} is not in the dump") from err
        buf = bytearray(data)
        self._install(base, buf)
        self.paged_in.append(base)
        return buf

    def allocate(self, addr: int, size: int) -> None:
        """Zero pages over [addr, addr+size) where the dump has none (a scratch stack)."""
        base = addr & self.mask
        while base < addr + size:
            if base not in self.pages and not self.parent.readable(base, 1):
                self._install(base, bytearray(self.page_size))
                self.allocated.append(base)
            base += self.page_size

    def _install(self, base: int, buf: bytearray) -> None:
        for p in self.patches:
            self._apply(base, buf, p)
        self.pages[base] = buf
        if self.on_new_page is not None:
            self.on_new_page(base, buf)

    def pristine(self, base: int) -> bytes:
        """A page as it first came in: the dump's bytes with the patches (zeros if made up)."""
        try:
            buf = bytearray(self.parent.read(base, self.page_size))
        except FaultError:
            buf = bytearray(self.page_size)
        for p in self.patches:
            self._apply(base, buf, p)
        return bytes(buf)

    def add_patch(self, patch: Patch) -> None:
        """Remember a patch; pages already present get it now, the rest as they come in."""
        self.patches.append(patch)
        for base, buf in self.pages.items():
            self._apply(base, buf, patch)

    def _apply(self, base: int, buf: bytearray, patch: Patch) -> None:
        lo = max(base, patch.addr)
        hi = min(base + self.page_size, patch.addr + len(patch.data))
        if lo < hi:
            buf[lo - base:hi - base] = patch.data[lo - patch.addr:hi - patch.addr]

    # -- AddressSpace ----------------------------------------------------------------

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        chunks: list[Chunk] = []
        cur, left = addr, n
        while left > 0:
            buf = self.page(cur)
            off = cur & ~self.mask
            take = min(left, self.page_size - off)
            chunks.append(Chunk(cur, take, _PageSource(buf), off))
            cur += take
            left -= take
        return chunks

    def read(self, addr: int, n: int) -> bytes:
        """Exactly n bytes; FaultError when a page is in neither the copy nor the dump."""
        off = addr & ~self.mask
        if off + n <= self.page_size and n > 0:
            return bytes(self.page(addr)[off:off + n])
        return super().read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        """Copy-on-write store, recorded in ``writes`` (what the emulated code changed)."""
        self.poke(addr, data)
        self.writes.append((addr, bytes(data)))

    def poke(self, addr: int, data: bytes) -> None:
        """A store that is not recorded: setting up arguments and the stack."""
        cur, pos = addr, 0
        while pos < len(data):
            buf = self.page(cur)
            off = cur & ~self.mask
            take = min(len(data) - pos, self.page_size - off)
            buf[off:off + take] = data[pos:pos + take]
            if self.on_write is not None:
                self.on_write(cur, take)
            cur += take
            pos += take

    def changed(self) -> list[tuple[int, bytes, bytes]]:
        """(addr, old, new) runs where the copy now differs from the patched dump: the net
        effect of the code's writes."""
        runs: list[tuple[int, bytes, bytes]] = []
        for base in sorted(self.pages):
            runs += _diff_runs(base, self.pristine(base), self.pages[base])
        return runs


def _diff_runs(base: int, old: bytes, new: bytearray) -> list[tuple[int, bytes, bytes]]:
    if old == new:
        return []
    runs: list[tuple[int, bytes, bytes]] = []
    i, n = 0, len(new)
    while i < n:
        if old[i] == new[i]:
            i += 1
            continue
        j = i
        while j < n and old[j] != new[j]:
            j += 1
        runs.append((base + i, bytes(old[i:j]), bytes(new[i:j])))
        i = j
    return runs
