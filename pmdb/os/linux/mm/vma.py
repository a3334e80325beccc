"""A process's VMAs (``struct vm_area_struct``): where they are kept, and what each maps.

Since 6.1 an mm keeps its VMAs in the maple tree ``mm_struct.mm_mt`` (index = user
address); before 6.1 in the list ``mm->mmap`` linked by ``vm_next`` (and an rbtree,
not needed here). The newer layout is tried first. Walks are bounded: the maple reader's
bounds, or walk_list's (a loop is corruption).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pmdb.errors import CorruptionError, FaultError, PmdbError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.fs import Fs
from pmdb.os.linux.mm.maple import MapleLayout, maple_entries
from pmdb.symbols.kmodules import StructOffsets
from pmdb.types.lists import walk_list
from pmdb.types.registry import TypeRegistry

VMA_LIMIT = 1_000_000       # VMAs at most in one mm (the kernel's max_map_count is 65530)


@dataclass(frozen=True)
class Vma:
    """One VMA as ``vm`` shows it: [start, end), vm_flags, and the struct file it maps."""

    address: int
    start: int
    end: int
    flags: int
    file: int
    pgoff: int


def vma_addresses(memory: AddressSpace, types: TypeRegistry, offsets: StructOffsets, mm: int) -> Iterator[int]:
    """Each vm_area_struct of the mm_struct at ``mm``, in address order."""
    mm_type = types.lookup("struct mm_struct")
    if mm_type.find_member("mm_mt") is not None:           # 6.1+: the maple tree
        tree = mm + offsets.offsetof("mm_struct", "mm_mt")
        for entry in maple_entries(memory, MapleLayout.from_types(types), tree):
            yield entry.entry
        return
    if mm_type.find_member("mmap") is None:
        raise SymbolError("struct mm_struct has neither mm_mt (6.1+) nor mmap: its VMAs are unknown")
    first = _ptr(memory, mm + offsets.offsetof("mm_struct", "mmap"), mm)
    if first:
        yield from walk_list(memory, first, offsets.offsetof("vm_area_struct", "vm_next"), VMA_LIMIT)


def read_vma(memory: AddressSpace, offsets: StructOffsets, addr: int) -> Vma:
    """The fields of the vm_area_struct at ``addr`` (vm_flags: a union member since 6.3)."""
    def field(name: str) -> int:
        return _ptr(memory, addr + offsets.offsetof("vm_area_struct", name), addr)

    return Vma(addr, field("vm_start"), field("vm_end"), field("vm_flags"), field("vm_file"), field("vm_pgoff"))


def vma_file_name(fs: Fs, vma: Vma) -> str:
    """The path of the file a VMA maps (d_path across mounts), "" for an anonymous one, or
    ``(why)`` when its dentry chain cannot be read (one bad VMA does not end a listing)."""
    if not vma.file:
        return ""
    try:
        return fs.file_path(vma.file)
    except PmdbError as err:
        return f"({err})"


def _ptr(memory: AddressSpace, at: int, owner: int) -> int:
    try:
        return memory.ptr(at)
    except FaultError as err:
        raise CorruptionError(owner, f"cannot read ({err})") from None
