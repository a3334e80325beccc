"""Arm64Kernel: the arm64 modules of this package behind the KernelArch protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from pmdb.arch import Arch
from pmdb.dumps.base import Note
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import CpuRegisters, KernelLayout, Lookup, Translation
from pmdb.os.linux.arch.aarch64 import layout, notes, paging, stacks, symbols
from pmdb.os.linux.arch.aarch64.unwind import Arm64Unwinder
from pmdb.symbols.kmodules import KernelModule, StructOffsets
from pmdb.symbols.table import Symbol, SymbolTable


class Arm64Kernel:
    """pmdb.os.linux.arch.KernelArch for arm64 (4 KB pages, 3 or 4 levels, frame records)."""

    name = "aarch64"

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
                 describe: Callable[[int], str] | None = None) -> Arm64Unwinder:
        mask = kernel_layout.pac_mask if isinstance(kernel_layout, layout.Arm64Layout) else 0
        name_of = (lambda a: describe(a).split("+", 1)[0]) if describe is not None else (lambda a: "")
        return Arm64Unwinder.build(mem, lookup, kernel_layout, offsets, mask, name_of, describe)

    def saved_registers(self, mem: AddressSpace, task: int, offsets: StructOffsets) -> dict[str, int]:
        """A switched-out task's cpu_context (x19..x29, sp, pc); {} when it cannot be read."""
        try:
            return stacks.saved_context(mem, task, stacks.TaskOffsets.from_types(offsets))
        except PmdbError:
            return {}

    def recover_symbols(self, space: AddressSpace, info: VmcoreInfo, table: SymbolTable) -> list[Symbol]:
        """Data symbols a functions-only kallsyms lacks (see symbols.py), and VMCOREINFO's."""
        def lookup(name: str) -> int | None:
            sym = table.lookup(name)
            return sym.addr if sym is not None else None

        def size(name: str) -> int:
            sym = table.lookup(name)
            return sym.size if sym is not None else 0

        found = symbols.recover_symbols(space, lookup, size)
        if not found:
            return found
        return found + [Symbol(name, addr, kind="object") for name, addr in info.symbols.items()
                        if table.lookup(name) is None and name not in {s.name for s in found}]

    def translate(self, space: AddressSpace, addr: int) -> Translation:
        return paging.translate(space, addr)

    def with_root(self, space: AddressSpace, root: int) -> AddressSpace:
        return paging.with_root(space, root)

    def fast_path(self, space: AddressSpace, addr: int) -> tuple[str, int] | None:
        return paging.fast_path(space, addr)


KERNEL = Arm64Kernel()
