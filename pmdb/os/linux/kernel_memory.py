"""From a vmcore's physical memory to kernel virtual memory and symbols, dump alone.

The bootstrap order matters: VMCOREINFO gives the page-table root and the
image rule; that is enough to decode kallsyms; kallsyms names the variables
that hold the randomized region bases and the BTF; the BTF gives the
``struct module`` layout for module symbols.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FormatError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.memory.x86_64 import KernelSpace
from pmdb.os.linux.kmem_layout import KernelLayout, attach_layout, kernel_space
from pmdb.symbols.kallsyms import KallsymsTables, load_kallsyms
from pmdb.symbols.kmodules import KernelModule, StructOffsets, read_modules
from pmdb.symbols.table import SymbolTable


@dataclass
class KernelMemory:
    info: VmcoreInfo
    space: KernelSpace
    layout: KernelLayout
    symbols: SymbolTable
    modules: list[KernelModule] = field(default_factory=list)

    def address_of(self, name: str) -> int:
        """A vmlinux symbol's address; SymbolError naming it when kallsyms lacks it."""
        sym = self.symbols.lookup(name)
        if sym is None:
            raise SymbolError(f"no symbol {name} in kallsyms")
        return sym.addr

    def btf_range(self) -> tuple[int, int] | None:
        """(address, size) of vmlinux's BTF, between __start_BTF and __stop_BTF."""
        start, stop = self.symbols.lookup("__start_BTF"), self.symbols.lookup("__stop_BTF")
        if start is None or stop is None or not 0 < stop.addr - start.addr < 1 << 28:
            return None
        return start.addr, stop.addr - start.addr

    def load_modules(self, offsets: StructOffsets) -> list[KernelModule]:
        """Walk ``modules`` and add every module's symbols to the table."""
        self.modules = read_modules(self.space, self.address_of("modules"), offsets)
        for mod in self.modules:
            self.symbols.add(mod.symbols)
        return self.modules


def load_kernel_memory(phys: AddressSpace, vmcoreinfo: str | bytes) -> KernelMemory:
    """Kernel virtual memory, layout and vmlinux symbols; modules come later (they need types)."""
    info = VmcoreInfo.parse(vmcoreinfo)
    if not info.raw:
        raise FormatError("the dump has no VMCOREINFO: pmdb needs it to find the kernel")
    space = kernel_space(phys, info)
    symbols = SymbolTable()
    symbols.add_source(load_kallsyms(space, KallsymsTables.from_vmcoreinfo(info)))

    def lookup(name: str) -> int | None:
        sym = symbols.lookup(name)
        return sym.addr if sym is not None else None

    layout = attach_layout(space, info, lookup)
    return KernelMemory(info, space, layout, symbols)
