"""Linux's maple tree (6.1+): the ranges a ``struct maple_tree`` maps, read from a dump.

Since 6.1 a process's VMAs live in ``mm_struct.mm_mt``, a B-tree of ranges. A node
pointer in the tree is an *encoded* node (``maple_enode``): the node is 256-byte
aligned, and the low byte says what it is (bits 3-6: ``enum maple_type``). Dense nodes
hold one entry per index; ``maple_leaf_64`` and ``maple_range_64`` nodes hold up to 16
slots with 15 pivots (slot i covers up to pivot i); ``maple_arange_64`` nodes (trees with
``MT_FLAGS_ALLOC_RANGE``, such as mm_mt) 10 slots, 9 pivots and the largest gap below
each slot. The reading follows the kernel's own ``mt_dump`` (lib/maple_tree.c), as crash's
maple_tree.c does, so both list the same entries: a pivot of 0 after slot 0 ends a node,
and the last slot runs to the node's maximum.

A dump is hostile input (a fuzzer damages it through a memory overlay): every walk here
is bounded by depth (the tree's recorded height, at most MAPLE_HEIGHT_MAX), by a node
count, by a visited set, and checks that pivots rise inside the range the parent gave the
node. Damage raises CorruptionError; nothing else escapes but pmdb errors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from pmdb.errors import CorruptionError, FaultError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.types.model import Type
from pmdb.types.registry import TypeRegistry

# include/linux/maple_tree.h (unchanged from 6.1 to 6.12)
MAPLE_NODE_MASK = 0xFF
MAPLE_NODE_TYPE_SHIFT = 3
MAPLE_NODE_TYPE_MASK = 0x0F
MT_FLAGS_HEIGHT_OFFSET = 2
MT_FLAGS_HEIGHT_MASK = 0x7C
MAPLE_HEIGHT_MAX = 31
MAPLE_RESERVED_RANGE = 4096
DENSE, LEAF_64, RANGE_64, ARANGE_64 = range(4)
TYPE_NAMES = ("maple_dense", "maple_leaf_64", "maple_range_64", "maple_arange_64")
XA_ZERO_ENTRY = (257 << 2) | 2

NODE_LIMIT = 100_000       # nodes at most (an mm at max_map_count=65530 VMAs has ~7,000)


class MapleEntry(NamedTuple):
    """One range of the tree: indices ``first`` to ``last`` (inclusive) map to ``entry``."""

    first: int
    last: int
    entry: int


@dataclass(frozen=True)
class MapleSlot:
    """An entry with where it sits: the slot indices from the root down (crash's -p
    position) and the depth of its node (0: the root node; -1: the entry is the tree's
    root itself, a tree of one entry at index 0)."""

    first: int
    last: int
    entry: int
    path: tuple[int, ...]
    depth: int


@dataclass(frozen=True)
class MapleNode:
    """One node as it was read: its address, type, range, parent and raw words (for
    crash's ``tree -t maple -v``)."""

    address: int
    type: int
    first: int
    last: int
    depth: int
    parent: int
    words: tuple[int, ...]


@dataclass(frozen=True)
class MapleLayout:
    """Where the tree's fields are, from the kernel's types (BTF or DWARF)."""

    root: int                # maple_tree.ma_root
    flags: int               # maple_tree.ma_flags
    node_size: int           # sizeof(struct maple_node)
    dense_slot: int          # maple_node.slot (dense nodes)
    dense_slots: int
    r64_pivot: int           # maple_range_64.pivot / .slot (leaf_64 and range_64 nodes)
    r64_slot: int
    r64_slots: int
    a64_pivot: int           # maple_arange_64.pivot / .slot / .gap / .meta
    a64_slot: int
    a64_slots: int
    a64_gap: int
    a64_meta: int
    word: int                # sizeof(unsigned long)

    @classmethod
    def from_types(cls, types: TypeRegistry) -> MapleLayout:
        """The layout, or SymbolError when the kernel has no maple tree (before 6.1)."""
        if types.find("struct maple_tree") is None or types.find("struct maple_node") is None:
            raise SymbolError("the kernel has no struct maple_tree (maple trees came in 6.1)")
        tree, node = types.lookup("struct maple_tree"), types.lookup("struct maple_node")
        r64, a64 = types.lookup("struct maple_range_64"), types.lookup("struct maple_arange_64")
        dense_slot, dense_n = _array(node, "slot")
        r64_pivot, _ = _array(r64, "pivot")
        r64_slot, r64_n = _array(r64, "slot")
        a64_pivot, _ = _array(a64, "pivot")
        a64_slot, a64_n = _array(a64, "slot")
        a64_gap, _ = _array(a64, "gap")
        return cls(root=_offset(tree, "ma_root"), flags=_offset(tree, "ma_flags"), node_size=node.sizeof(),
                   dense_slot=dense_slot, dense_slots=dense_n, r64_pivot=r64_pivot, r64_slot=r64_slot,
                   r64_slots=r64_n, a64_pivot=a64_pivot, a64_slot=a64_slot, a64_slots=a64_n,
                   a64_gap=a64_gap, a64_meta=_offset(a64, "meta"), word=types.ptr_size)

    def slots(self, node_type: int) -> int:
        return (self.dense_slots, self.r64_slots, self.r64_slots, self.a64_slots)[node_type]

    def node_max(self, node_type: int) -> int:
        """The largest index a root node of this type covers (crash's mt_max)."""
        return self.dense_slots if node_type == DENSE else (1 << 8 * self.word) - 1


def _offset(t: Type, member: str) -> int:
    found = t.strip().find_member(member)
    if found is None:
        raise SymbolError(f"{t.strip().name or 'the maple tree'} has no member {member}")
    return found[1] // 8


def _array(t: Type, member: str) -> tuple[int, int]:
    """A member array's byte offset and length."""
    found = t.strip().find_member(member)
    if found is None or found[0].type.strip().kind != "array" or not found[0].type.strip().count:
        raise SymbolError(f"{t.strip().name or 'the maple tree'} has no array member {member}")
    return found[1] // 8, found[0].type.strip().count or 0


def is_node(entry: int) -> bool:
    """xa_is_node: an internal pointer above the reserved range is a node, not an entry."""
    return entry & 3 == 2 and entry > MAPLE_RESERVED_RANGE


def node_type(enode: int) -> int:
    return (enode >> MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK


def tree_height(flags: int) -> int:
    return (flags & MT_FLAGS_HEIGHT_MASK) >> MT_FLAGS_HEIGHT_OFFSET


class MapleWalk:
    """One bounded walk of one tree (a fresh visited set and node count for each)."""

    def __init__(self, memory: AddressSpace, layout: MapleLayout, *, limit: int = NODE_LIMIT,
                 max_depth: int = MAPLE_HEIGHT_MAX, empty: bool = False) -> None:
        self.memory = memory
        self.layout = layout
        self.limit = limit
        self.max_depth = min(max_depth, MAPLE_HEIGHT_MAX)
        self.empty = empty               # yield NULL slots (gaps) too, as crash's -v shows them
        self.on_node: Callable[[MapleNode], None] | None = None   # told of each node as it is read
        self._seen: set[int] = set()
        self._fmt = "<" if memory.byteorder == "little" else ">"

    def tree(self, tree: int) -> Iterator[MapleSlot]:
        """Every entry of the struct maple_tree at ``tree``."""
        lay = self.layout
        root = self._word(tree + lay.root, tree, "ma_root")
        height = tree_height(self._u32(tree + lay.flags, tree))
        if height:
            self.max_depth = min(self.max_depth, height - 1)
        if not is_node(root):
            if root or self.empty:
                yield MapleSlot(0, 0, root, (0,), -1)
            return
        yield from self.node(root)

    def node(self, enode: int) -> Iterator[MapleSlot]:
        """Every entry below the encoded node ``enode`` (crash's ``tree -N``)."""
        yield from self._node(enode, 0, self.layout.node_max(node_type(enode)), 0, ())

    def _node(self, enode: int, first: int, last: int, depth: int, path: tuple[int, ...]) -> Iterator[MapleSlot]:
        lay = self.layout
        kind = node_type(enode)
        addr = enode & ~MAPLE_NODE_MASK
        if kind > ARANGE_64:
            raise CorruptionError(addr, f"maple node {enode:#x} has no such type ({kind})")
        if depth > self.max_depth:
            raise CorruptionError(addr, f"maple node {enode:#x} is deeper than the tree's height ({self.max_depth + 1})")
        if addr in self._seen:
            raise CorruptionError(addr, f"the maple tree reaches node {addr:#x} twice")
        if len(self._seen) >= self.limit:
            raise CorruptionError(addr, f"the maple tree has more than {self.limit} nodes")
        self._seen.add(addr)
        words = self._node_words(addr)
        if self.on_node is not None:
            self.on_node(MapleNode(addr, kind, first, last, depth, words[0], words))
        if kind == DENSE:
            yield from self._dense(words, first, last, depth, path)
            return
        pivot, slot = (lay.a64_pivot, lay.a64_slot) if kind == ARANGE_64 else (lay.r64_pivot, lay.r64_slot)
        nslots, w = lay.slots(kind), lay.word
        slots = words[slot // w:slot // w + nslots]
        pivots = words[pivot // w:pivot // w + nslots - 1]
        leaf = kind == LEAF_64
        for i, (lo, hi) in enumerate(_ranges(addr, pivots, slots, first, last, kind, lay)):
            if leaf:
                if slots[i] or self.empty:
                    yield MapleSlot(lo, hi, slots[i], (*path, i), depth)
            elif slots[i]:
                yield from self._node(slots[i], lo, hi, depth + 1, (*path, i))

    def _dense(self, words: tuple[int, ...], first: int, last: int, depth: int,
               path: tuple[int, ...]) -> Iterator[MapleSlot]:
        base = self.layout.dense_slot // self.layout.word
        for i in range(self.layout.dense_slots):
            if first + i > last:
                return
            entry = words[base + i]
            if entry or self.empty:
                yield MapleSlot(first + i, first + i, entry, (*path, i), depth)

    def _node_words(self, addr: int) -> tuple[int, ...]:
        lay = self.layout
        try:
            raw = self.memory.read(addr, lay.node_size)
        except FaultError as err:
            raise CorruptionError(addr, f"cannot read maple node {addr:#x} ({err})") from None
        n = lay.node_size // lay.word
        return struct.unpack(f"{self._fmt}{n}{'Q' if lay.word == 8 else 'I'}", raw[:n * lay.word])

    def _word(self, addr: int, tree: int, what: str) -> int:
        try:
            return self.memory.read_int(addr, self.layout.word)
        except FaultError as err:
            raise CorruptionError(tree, f"cannot read the maple tree's {what} ({err})") from None

    def _u32(self, addr: int, tree: int) -> int:
        try:
            return self.memory.read_int(addr, 4)
        except FaultError as err:
            raise CorruptionError(tree, f"cannot read the maple tree's ma_flags ({err})") from None


def _ranges(addr: int, pivots: tuple[int, ...], slots: tuple[int, ...], first: int, last: int,
            kind: int, lay: MapleLayout) -> Iterator[tuple[int, int]]:
    """The (first, last) of each used slot of a range node, as the kernel's mt_dump_range64
    reads them: slot i runs to pivot i, a zero pivot after slot 0 ends the node, and the
    last slot (no pivot of its own) runs to the node's maximum. Pivots must rise and stay
    inside [first, last], the range the parent gave this node."""
    lo = first
    for i, slot in enumerate(slots):
        if i < len(pivots):
            hi = pivots[i]
        elif not slot and (kind == ARANGE_64 or last != lay.node_max(kind)):
            return
        else:
            hi = last
        if hi == 0 and i > 0:
            return
        if hi < lo or hi > last:
            raise CorruptionError(addr, f"maple node {addr:#x} pivot {i} is {hi:#x}, outside "
                                        f"{lo:#x}-{last:#x}")
        yield lo, hi
        if hi == last:
            return
        lo = hi + 1


def maple_entries(memory: AddressSpace, layout: MapleLayout, tree: int, *,
                  limit: int = NODE_LIMIT) -> Iterator[MapleEntry]:
    """(first, last, entry) for every non-NULL entry of the struct maple_tree at ``tree``, in
    index order. Bounded (depth, ``limit`` nodes, each node once, rising pivots): damage
    raises CorruptionError, an unreadable node too."""
    for s in MapleWalk(memory, layout, limit=limit).tree(tree):
        yield MapleEntry(s.first, s.last, s.entry)


def maple_tree_entries(memory: AddressSpace, types: TypeRegistry, tree: int) -> Iterator[MapleEntry]:
    """maple_entries with the layout from the kernel's types (SymbolError before 6.1)."""
    return maple_entries(memory, MapleLayout.from_types(types), tree)
