"""Linux's XArray (and the radix tree, which is an XArray since 4.20): every entry by index.

An entry pointer's low bits say what it is (include/linux/xarray.h): ``...10`` above
4096 is an internal node (``struct xa_node`` at entry - 2), ``...10`` below it a
sibling or retry marker, ``...1`` a value entry, anything else a pointer stored by
the user. A node has ``1 << XA_CHUNK_SHIFT`` slots and covers ``shift`` more index
bits per level. The walk is bounded in depth and nodes, and a node met twice is
corruption.
"""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.errors import CorruptionError
from pmdb.memory.space import AddressSpace
from pmdb.types.model import Type

MAX_NODES = 1 << 20
MAX_SHIFT = 64


def _offset(node_type: Type, member: str) -> int:
    found = node_type.strip().find_member(member)
    if found is None:
        raise CorruptionError(0, f"struct xa_node has no member {member}")
    return found[1] // 8


def xarray_entries(mem: AddressSpace, head: int, node_type: Type) -> Iterator[tuple[int, int]]:
    """(index, entry) of each user entry (pointer or value, never NULL or internal) under
    ``xa_head`` value ``head``, in index order; node_type is the kernel's struct xa_node."""
    shift_off, slots_off = _offset(node_type, "shift"), _offset(node_type, "slots")
    slots_t = node_type.strip().find_member("slots")
    count = slots_t[0].type.strip().count if slots_t is not None else None
    if not count:
        raise CorruptionError(0, "struct xa_node's slots has no length")
    seen: set[int] = set()
    stack: list[tuple[int, int]] = [(head, 0)]       # (entry, first index it covers)
    while stack:
        entry, base = stack.pop()
        if not is_node(entry):
            if entry and not (entry & 3 == 2):         # a sibling/retry marker is no entry
                yield base, entry
            continue
        node = entry - 2
        if node in seen or len(seen) >= MAX_NODES:
            raise CorruptionError(node, "the xarray reaches a node twice (or has too many)")
        seen.add(node)
        shift = mem.u8(node + shift_off)
        if shift >= MAX_SHIFT:
            raise CorruptionError(node, f"an xa_node with shift {shift}")
        children = [(mem.ptr(node + slots_off + i * mem.ptr_size), base + (i << shift)) for i in range(count)]
        stack.extend(reversed([c for c in children if c[0]]))


def is_node(entry: int) -> bool:
    """xa_is_node: an internal entry that points at a node."""
    return entry & 3 == 2 and entry > 4096
