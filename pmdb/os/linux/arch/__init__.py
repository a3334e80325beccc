"""The kernel's per-CPU parts, behind one protocol the generic kernel model calls.

Pure CPU facts (registers, NT_PRSTATUS order, pointer size) are pmdb.arch's.
What differs per CPU *in the kernel* lives here, one package per CPU
(``x86_64/``; i386-PAE or arm64 would be siblings): building the kernel's
virtual address space from VMCOREINFO, the region layout and per-CPU bases,
the registers a dump's notes hold, the kernel unwinder with its exception
frames and stack bounds, and page-table walks shown to the user. Each package
has a ``kernel`` module whose ``KERNEL`` satisfies ``KernelArch``;
``kernel_arch`` finds it by the CPU's name, so adding a CPU adds a package and
edits nothing else.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pmdb.arch import Arch
from pmdb.arch.prstatus import NT_PRSTATUS, decode_prstatus
from pmdb.dumps.base import Note
from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import FaultError, FormatError, SymbolError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.stacks.frames import Unwinder
from pmdb.symbols.kmodules import KernelModule, StructOffsets

Lookup = Callable[[str], "int | None"]
CpuRegisters = list[tuple[int, dict[str, int]]]     # (pid in the note, registers), in CPU order


@dataclass
class KernelLayout:
    """The kernel's memory map as this dump's kernel set it up (KASLR moves every base)."""

    mem: AddressSpace
    kernel_offset: int
    phys_base: int
    image_start: int                # where the kernel image is linked (x86-64: __START_KERNEL_map)
    page_offset_base: int           # the direct map of all physical memory
    vmalloc_base: int
    vmemmap_base: int               # the struct page array
    modules_start: int
    modules_end: int
    per_cpu_offset_addr: int | None = None
    nr_cpu_ids: int = 1
    _offsets: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def per_cpu_offset(self, cpu: int) -> int:
        """``__per_cpu_offset[cpu]``: add it to a per-CPU symbol's value to get that CPU's copy
        (read once per CPU: kmem -s asks it twice for each of ~150 caches)."""
        known = self._offsets.get(cpu)
        if known is not None:
            return known
        if self.per_cpu_offset_addr is None:
            raise SymbolError("no __per_cpu_offset symbol: per-CPU data is unknown")
        if not 0 <= cpu < self.nr_cpu_ids:
            raise SymbolError(f"cpu {cpu} out of range (nr_cpu_ids is {self.nr_cpu_ids})")
        value = self._offsets[cpu] = self.mem.ptr(self.per_cpu_offset_addr + self.mem.ptr_size * cpu)
        return value

    def per_cpu_address(self, var: int, cpu: int) -> int:
        """Where CPU ``cpu``'s copy of the per-CPU variable at ``var`` is: the sum wraps at the
        word size (arm64's offsets are "negative": the copy lies below the symbol)."""
        return (var + self.per_cpu_offset(cpu)) & ((1 << 8 * self.mem.ptr_size) - 1)

    def per_cpu_offsets(self) -> list[int]:
        return [self.per_cpu_offset(cpu) for cpu in range(self.nr_cpu_ids)]

    def region(self, addr: int) -> str:
        """Which region an address falls in, for ::whatis."""
        if self.image_start <= addr < self.modules_start:
            return "kernel image"
        if self.modules_start <= addr < self.modules_end:
            return "module space"
        bases = sorted([(self.page_offset_base, "direct map"), (self.vmalloc_base, "vmalloc"),
                        (self.vmemmap_base, "vmemmap")])
        if addr < 1 << (8 * self.mem.ptr_size - 1):
            return "user"           # the kernel owns the top half of the address space
        name = "kernel (unknown region)"
        for base, label in bases:
            if addr >= base:
                name = label
        return name


@dataclass(frozen=True)
class PageEntry:
    """One page-table entry met on a walk: its level, where it is, its value and flags."""

    level: str
    address: int            # physical address of the entry itself
    value: int
    flags: str              # the CPU's names for the bits set ("PRESENT|RW|...")


@dataclass(frozen=True)
class Translation:
    """A page walk: every entry met, and the physical address (None when a level is missing)."""

    vaddr: int
    root: int               # physical address of the top-level table
    root_level: str         # its name ("PGD")
    entries: list[PageEntry]
    phys: int | None
    page_size: int
    error: str = ""


class KernelArch(Protocol):
    """What the generic kernel model asks of a CPU's kernel parts."""

    name: str

    def kernel_space(self, phys: AddressSpace, info: VmcoreInfo) -> AddressSpace:
        """The kernel's virtual space from VMCOREINFO alone (enough to decode kallsyms)."""
        ...

    def attach_layout(self, space: AddressSpace, info: VmcoreInfo, lookup: Lookup) -> KernelLayout:
        """The region bases, once symbols are known; switches on the space's fast paths."""
        ...

    def note_registers(self, notes: Sequence[Note], arch: Arch) -> CpuRegisters:
        """Each CPU's registers from the dump's notes (NT_PRSTATUS, else the CPU's own)."""
        ...

    def thread_size(self, lookup: Lookup) -> int:
        """The size of a task's kernel stack (THREAD_SIZE)."""
        ...

    def unwinder(self, mem: AddressSpace, lookup: Lookup, layout: KernelLayout,
                 offsets: StructOffsets | None, modules: Iterable[KernelModule], release: str,
                 describe: Callable[[int], str] | None = None) -> Unwinder:
        """The kernel unwinder for this dump; SymbolError when the kernel lacks what it needs."""
        ...

    def translate(self, space: AddressSpace, addr: int) -> Translation:
        """A page-table walk (never a fast path); a missing level ends it with its reason."""
        ...

    def with_root(self, space: AddressSpace, root: int) -> AddressSpace:
        """The same physical memory walked from another top-level table (a process's)."""
        ...

    def fast_path(self, space: AddressSpace, addr: int) -> tuple[str, int] | None:
        """(rule, physical address) when an arithmetic rule maps addr without a walk."""
        ...


def kernel_arch(arch: Arch | str) -> KernelArch:
    """The kernel parts of a CPU: ``pmdb.os.linux.arch.<name>.kernel.KERNEL``."""
    name = arch if isinstance(arch, str) else arch.name
    try:
        module = importlib.import_module(f"{__name__}.{name}.kernel")
    except ModuleNotFoundError:
        raise FormatError(f"pmdb does not model {name} Linux kernels (x86_64, i386 and aarch64)") from None
    kernel: KernelArch = module.KERNEL
    return kernel


def init_stack_size(lookup: Lookup, default: int) -> int:
    """THREAD_SIZE, from the init task's stack bounds (the linker script sizes them so; KASAN
    kernels double it); the CPU's usual size when the symbols are missing or absurd."""
    lo, hi = lookup("__start_init_task"), lookup("__end_init_task")
    if lo is not None and hi is not None and 0 < hi - lo <= 1 << 20 and (hi - lo) & (hi - lo - 1) == 0:
        return hi - lo
    return default


def read_nr_cpu_ids(space: AddressSpace, lookup: Lookup) -> int:
    """The kernel's nr_cpu_ids (every CPU's layout needs it); 1 when missing or impossible."""
    addr = lookup("nr_cpu_ids")
    if addr is None:
        return 1
    try:
        n = space.u32(addr)
    except FaultError:
        return 1
    return n if 0 < n <= 8192 else 1


def prstatus_registers(notes: Sequence[Note], arch: Arch) -> CpuRegisters:
    """(pid, registers) of each CORE/NT_PRSTATUS note, in the dump's (CPU) order."""
    out = []
    for note in notes:
        if note.type == NT_PRSTATUS and note.name == "CORE":
            try:
                st = decode_prstatus(note.desc, arch)
            except struct.error:
                continue
            out.append((st.pid, st.registers))
    return out
