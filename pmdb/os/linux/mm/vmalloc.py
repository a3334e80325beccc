"""vmalloc space: the busy vmap_areas (crash's ``kmem -v``), from the kernel's own list.

Up to 6.8 every allocated vmap_area is on ``vmap_area_list`` in address order (its
``list`` member); each names its ``struct vm_struct`` (``vm``: none for vm_map_ram
areas, which crash leaves out, as it does here). 6.9 split the areas over per-node
``vmap_nodes`` busy trees: not read here yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pmdb.errors import SymbolError
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


def vmap_areas(memory: AddressSpace, types: TypeRegistry, offsets: StructOffsets,
               list_head: int | None) -> Iterator[VmapArea]:
    """Each vmap_area with a vm_struct, in address order (list_head: vmap_area_list)."""
    if list_head is None:
        raise SymbolError("no vmap_area_list symbol (6.9+ keeps vmap areas per node: not read yet)")
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
