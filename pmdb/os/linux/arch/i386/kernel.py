"""I386Kernel: the i386 modules of this package behind the KernelArch protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pmdb.arch import Arch
from pmdb.dumps.base import Note
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import CpuRegisters, KernelLayout, Lookup, Translation
from pmdb.os.linux.arch.i386 import layout, notes, paging, stacks
from pmdb.os.linux.arch.i386.unwind import FramePointerUnwinder
from pmdb.symbols.kmodules import KernelModule, StructOffsets


class I386Kernel:
    """pmdb.os.linux.arch.KernelArch for 32-bit x86 (PAE or two-level paging, frame pointers)."""

    name = "i386"

    def kernel_space(self, phys: AddressSpace, info: VmcoreInfo) -> AddressSpace:
        return layout.kernel_space(phys, info)

    def attach_layout(self, space: AddressSpace, info: VmcoreInfo, lookup: Lookup) -> KernelLayout:
        return layout.attach_layout(paging.paged(space), info, lookup)

    def note_registers(self, dump_notes: Sequence[Note], arch: Arch) -> CpuRegisters:
        return notes.note_registers(dump_notes, arch)

    def thread_size(self, lookup: Lookup) -> int:
        return stacks.thread_size(lookup)

    def unwinder(self, mem: AddressSpace, lookup: Lookup, kernel_layout: KernelLayout,
                 offsets: StructOffsets | None, modules: Iterable[KernelModule], release: str,
                 describe: Callable[[int], str] | None = None) -> FramePointerUnwinder:
        return FramePointerUnwinder.build(mem, lookup, kernel_layout, offsets, modules, describe)

    def translate(self, space: AddressSpace, addr: int) -> Translation:
        return paging.translate(space, addr)

    def with_root(self, space: AddressSpace, root: int) -> AddressSpace:
        return paging.with_root(space, root)

    def fast_path(self, space: AddressSpace, addr: int) -> tuple[str, int] | None:
        return paging.fast_path(space, addr)


KERNEL = I386Kernel()
