"""vmalloc space: the busy vmap_areas (crash's ``kmem -v``), from the kernel's own list.

Up to 6.8 every allocated vmap_area is on ``vmap_area_list`` in address order (its
``list`` member); each names its ``struct vm_struct`` (``vm``: none for vm_map_ram
areas, which crash leaves out, as it does here). 6.9 split the areas over
``nr_vmap_nodes`` ``struct vmap_node``s, each with a busy list (``busy.head``) in
address order: they are merged back into one order, as crash does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pmdb.errors import CorruptionError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.kmodules import StructOffsets
from pmdb.types.lists import ListLink, walk_list
from pmdb.types.registry import TypeRegistry

VM_VM_AREA = 0x4            # mm/vmalloc.c's flag of a vmap_area with a vm_struct (when it has flags)


@dataclass(frozen=True)
class VmapArea:
    address: int        # the struct vmap_area
    vm: int             # its struct vm_struct
    start: int
    end: int


MAX_VMAP_NODES = 1024


def busy_lists(memory: AddressSpace, types: TypeRegistry, offsets: StructOffsets,
               lookup: Callable[[str], int | None]) -> list[int]:
    """The list heads of the busy vmap areas: vmap_area_list (to 6.8), else each vmap
    node's busy.head (6.9+)."""
    head = lookup("vmap_area_list")
    if head is not None:
        return [head]
    nodes, count = lookup("vmap_nodes"), lookup("nr_vmap_nodes")
    if nodes is None or count is None:
        raise SymbolError("neither vmap_area_list nor vmap_nodes: the vmalloc areas are unknown")
    n = memory.u32(count)
    if not 0 < n <= MAX_VMAP_NODES:
        raise CorruptionError(count, f"nr_vmap_nodes is {n}")
    base, size = memory.ptr(nodes), types.lookup("struct vmap_node").sizeof()
    busy = offsets.offsetof("vmap_node", "busy") + offsets.offsetof("rb_list", "head")
    return [base + i * size + busy for i in range(n)]


def vmap_areas(memory: AddressSpace, types: TypeRegistry, offsets: StructOffsets,
               lookup: Callable[[str], int | None]) -> list[VmapArea]:
    """Each vmap_area with a vm_struct, in address order."""
    areas = [a for head in busy_lists(memory, types, offsets, lookup)
             for a in _listed(memory, types, offsets, head)]
    return sorted(areas, key=lambda a: a.start)


def _listed(memory: AddressSpace, types: TypeRegistry, offsets: StructOffsets, list_head: int) -> Iterator[VmapArea]:
    va_type = types.lookup("struct vmap_area")
    has_flags = va_type.find_member("flags") is not None and va_type.find_member("purge_list") is not None
    link = offsets.offsetof("vmap_area", "list")
    start, end, vm = (offsets.offsetof("vmap_area", m) for m in ("va_start", "va_end", "vm"))
    flags = offsets.offsetof("vmap_area", "flags") if has_flags else 0
    for va in walk_list(memory, list_head, ListLink(link, link), head=list_head):
        if has_flags and memory.ptr(va + flags) != VM_VM_AREA:
            continue
        area_vm = memory.ptr(va + vm)
        if not has_flags and not area_vm:
            continue
        yield VmapArea(va, area_vm, memory.ptr(va + start), memory.ptr(va + end))
