"""Linux's XArray (4.20+; the radix_tree and IDR APIs sit on it): its entries, from a dump.

A ``struct xarray`` holds ``xa_head``: NULL, one entry (index 0), or a node pointer
tagged as internal (``(ptr & 3) == 2`` above 4096). A ``struct xa_node`` has ``shift``
and XA_CHUNK_SIZE slots (64; the length of ``slots`` in the kernel's types): slot i
covers indices ``i << shift`` further on. Internal entries below a node are children
(shift > 0), siblings of a multi-index entry (skipped: the entry was already seen) or
the retry/zero markers (skipped, as xa_for_each does). The positions match crash's
``tree -t xarray -p`` (root/SLOT/.../SLOT).

Bounded as every walk of dump memory is: a node's shift must fall by one chunk per level
(at most 64 / 6 + 1 levels), each node is met once, at most NODE_LIMIT nodes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pmdb.errors import CorruptionError, FaultError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.types.registry import TypeRegistry

NODE_LIMIT = 1_000_000
XA_RETRY_ENTRY, XA_ZERO_ENTRY = (256 << 2) | 2, (257 << 2) | 2


@dataclass(frozen=True)
class XaLayout:
    head: int            # xarray.xa_head
    shift: int           # xa_node.shift
    slots: int           # xa_node.slots
    chunk: int           # XA_CHUNK_SIZE
    word: int

    @classmethod
    def from_types(cls, types: TypeRegistry) -> XaLayout:
        xa, node = types.find("struct xarray"), types.find("struct xa_node")
        if xa is None or node is None:
            raise SymbolError("the kernel has no struct xarray (XArrays came in 4.20)")
        head, slots, shift = (xa.strip().find_member("xa_head"), node.strip().find_member("slots"),
                              node.strip().find_member("shift"))
        if head is None or slots is None or shift is None or not slots[0].type.strip().count:
            raise SymbolError("struct xarray / xa_node lack xa_head, slots or shift")
        return cls(head[1] // 8, shift[1] // 8, slots[1] // 8, slots[0].type.strip().count or 64, types.ptr_size)

    @property
    def chunk_shift(self) -> int:
        return self.chunk.bit_length() - 1


@dataclass(frozen=True)
class XaEntry:
    """One entry: its index, its value, and the slot path from the root (crash's -p)."""

    index: int
    entry: int
    path: tuple[int, ...]


def is_internal(entry: int) -> bool:
    return entry & 3 == 2


def is_node(entry: int) -> bool:
    return is_internal(entry) and entry > 4096


class XaWalk:
    """One bounded walk of one XArray."""

    def __init__(self, memory: AddressSpace, layout: XaLayout, limit: int = NODE_LIMIT) -> None:
        self.memory, self.layout, self.limit = memory, layout, limit
        self._seen: set[int] = set()

    def array(self, xa: int) -> Iterator[XaEntry]:
        """Every entry of the struct xarray (or radix_tree_root) at ``xa``."""
        try:
            head = self.memory.read_int(xa + self.layout.head, self.layout.word)
        except FaultError as err:
            raise CorruptionError(xa, f"cannot read the xarray's head ({err})") from None
        if is_node(head):
            yield from self.node(head)
        elif head:
            yield XaEntry(0, head, ())

    def node(self, node: int) -> Iterator[XaEntry]:
        """Every entry below an xa_node (its address, tagged or not: crash's ``tree -N``)."""
        addr = node & ~3
        yield from self._node(addr, self._shift(addr), 0, ())

    def _shift(self, addr: int) -> int:
        try:
            shift = self.memory.u8(addr + self.layout.shift)
        except FaultError as err:
            raise CorruptionError(addr, f"cannot read xa_node {addr:#x} ({err})") from None
        if shift % self.layout.chunk_shift or shift >= 8 * self.layout.word:
            raise CorruptionError(addr, f"xa_node {addr:#x} has shift {shift}")
        return shift

    def _node(self, addr: int, shift: int, base: int, path: tuple[int, ...]) -> Iterator[XaEntry]:
        lay = self.layout
        if addr in self._seen:
            raise CorruptionError(addr, f"the xarray reaches node {addr:#x} twice")
        if len(self._seen) >= self.limit:
            raise CorruptionError(addr, f"the xarray has more than {self.limit} nodes")
        self._seen.add(addr)
        try:
            raw = self.memory.read(addr + lay.slots, lay.chunk * lay.word)
        except FaultError as err:
            raise CorruptionError(addr, f"cannot read xa_node {addr:#x} ({err})") from None
        fmt = ("<" if self.memory.byteorder == "little" else ">") + f"{lay.chunk}{'Q' if lay.word == 8 else 'I'}"
        for i, entry in enumerate(struct.unpack(fmt, raw)):
            index = base + (i << shift)
            if not entry or entry in (XA_RETRY_ENTRY, XA_ZERO_ENTRY):
                continue
            if is_node(entry) and shift:
                child = entry & ~3
                if self._shift(child) != shift - lay.chunk_shift:
                    raise CorruptionError(child, f"xa_node {child:#x} under {addr:#x} has the wrong shift")
                yield from self._node(child, shift - lay.chunk_shift, index, (*path, i))
            elif is_internal(entry) and entry < 4096:
                continue                        # a sibling of a multi-index entry
            else:
                yield XaEntry(index, entry, (*path, i))


def xarray_entries(memory: AddressSpace, types: TypeRegistry, xa: int) -> Iterator[XaEntry]:
    """Every present entry of the XArray at ``xa``, in index order (bounded: see XaWalk)."""
    return XaWalk(memory, XaLayout.from_types(types)).array(xa)
