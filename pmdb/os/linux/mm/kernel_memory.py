"""From a vmcore's physical memory to kernel virtual memory and symbols, dump alone.

The bootstrap order matters: VMCOREINFO gives the page-table root and the
image rule; that is enough to decode kallsyms; kallsyms names the variables
that hold the randomized region bases and the BTF; the BTF gives the
``struct module`` layout for module symbols. What differs per CPU is asked of
the CPU's kernel parts (pmdb.os.linux.arch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pmdb.arch import Arch, by_name
from pmdb.cache import Cache
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FormatError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelArch, KernelLayout, Translation, kernel_arch
from pmdb.symbols.kallsyms import KallsymsTables, load_kallsyms
from pmdb.symbols.kallsyms_scan import scan_kallsyms
from pmdb.symbols.kmodules import KernelModule, StructOffsets, read_modules
from pmdb.symbols.table import Symbol, SymbolTable


@dataclass
class KernelMemory:
    """The kernel's virtual memory, its layout and its symbols: what log, address and
    page-table commands need, present even when the kernel's types are not."""

    info: VmcoreInfo
    space: AddressSpace
    layout: KernelLayout
    symbols: SymbolTable
    arch: KernelArch
    modules: list[KernelModule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)    # what works less well, one line each
    vmlinux: str = ""         # the debug vmlinux whose DWARF (and symbols) pmdb uses, if any

    def lookup(self, name: str) -> int | None:
        """A vmlinux symbol's address (never a module's), or None."""
        sym = self.symbols.lookup(name)
        return sym.addr if sym is not None and sym.module is None else None

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

    # -- page tables, for ::vtop ---------------------------------------------------

    def vtop(self, addr: int, root: int | None = None) -> Translation:
        """The page walk for addr from the kernel's tables, or from the top-level table at
        physical ``root`` (a process's)."""
        space = self.space if root is None else self.arch.with_root(self.space, root)
        return self.arch.translate(space, addr)

    def fast_path(self, addr: int) -> tuple[str, int] | None:
        """(rule, physical address) when an arithmetic rule maps addr without a walk."""
        return self.arch.fast_path(self.space, addr)

    def page_struct(self, pfn: int) -> int:
        """The address of a page frame's ``struct page`` in the vmemmap array."""
        return self.layout.vmemmap_base + pfn * self.info.sizes.get("page", 64)


MoreSymbols = Callable[[VmcoreInfo, AddressSpace, SymbolTable], Iterable[Symbol]]


def load_kernel_memory(phys: AddressSpace, vmcoreinfo: str | bytes, arch: Arch | None = None,
                       more_symbols: MoreSymbols | None = None, cache: Cache | None = None) -> KernelMemory:
    """Kernel virtual memory, layout and vmlinux symbols; modules come later (they need types).
    ``arch`` is the dump's CPU; x86-64 when not given (the only kernel pmdb models yet).
    ``more_symbols`` adds what kallsyms lacks (a debug vmlinux's data symbols) before the
    layout reads the variables it needs. ``cache`` keeps decoded kallsyms (kallsyms_cache)."""
    info = VmcoreInfo.parse(vmcoreinfo)
    if not info.raw:
        raise FormatError("the dump has no VMCOREINFO: pmdb needs it to find the kernel")
    parts = kernel_arch(arch or by_name("x86_64"))
    space = parts.kernel_space(phys, info)
    symbols = SymbolTable(first_alias=True)
    problems = []
    try:
        symbols.add_source(load_kallsyms(space, kallsyms_tables(space, info), cache))
    except (SymbolError, FormatError) as err:
        # a kernel pmdb does not know: VMCOREINFO's own symbols still find the log ring
        # (prb), utsname and the page tables, so ::status and ::msgbuf answer
        symbols.add(Symbol(name, addr, kind="object") for name, addr in info.symbols.items())
        problems.append(f"only VMCOREINFO's {len(info.symbols)} symbols: {err}")

    def lookup(name: str) -> int | None:
        sym = symbols.lookup(name)
        return sym.addr if sym is not None else None

    # a kallsyms of functions only (arm64 without CONFIG_KALLSYMS_ALL): the CPU's parts may
    # find the data symbols the rest needs (BTF, init_task, per-CPU) in the dump
    recover = getattr(parts, "recover_symbols", None)
    if recover is not None and not problems:
        symbols.add(recover(space, info, symbols))
    if more_symbols is not None:
        symbols.add(more_symbols(info, space, symbols))
    layout = parts.attach_layout(space, info, lookup)
    return KernelMemory(info, space, layout, symbols, parts, problems=problems)


def kallsyms_tables(space: AddressSpace, info: VmcoreInfo) -> KallsymsTables:
    """Where kallsyms lives: named by VMCOREINFO since Linux 6.0, found by scanning the
    kernel image before (from ``_stext``, which VMCOREINFO names on 5.x)."""
    if "kallsyms_names" in info.symbols:
        return KallsymsTables.from_vmcoreinfo(info)
    stext = info.symbols.get("_stext")
    if stext is None:
        raise SymbolError("vmcoreinfo names neither kallsyms (Linux 6.0+) nor _stext: "
                          "the kernel's symbols cannot be found without a vmlinux")
    # the lowest .data symbol VMCOREINFO names bounds .rodata, where kallsyms is, from above
    above = [a for a in info.symbols.values() if stext < a < stext + (1 << 30)]
    return scan_kallsyms(space, stext, hint=min(above, default=None)).tables


def kernel_parts(owner: Any) -> KernelMemory | None:
    """The kernel memory of a kernel Target or of its OS model (``LinuxKernel.km``); None
    when it is not a kernel dump. A kernel whose types failed to load still has it."""
    os_model = getattr(owner, "os", owner)
    km = getattr(os_model, "km", None)
    return km if isinstance(km, KernelMemory) else None
