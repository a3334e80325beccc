"""What a kernel address is: ``::whatis`` for Linux dumps.

A kernel address means something different in each region of the memory
map: in the image or module space it is code or data with a symbol; in the
direct map it is a physical address plus the ``struct page`` describing it;
in vmalloc space it may be a task's stack; in vmemmap it is a ``struct page``
itself; and per-CPU variables live at ``__per_cpu_offset[cpu]`` plus the
variable's link-time offset. The region bases come from the dump's layout
(``KernelMemory.layout``), never from constants, because KASLR moves them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.errors import CorruptionError, FaultError, PmdbError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.arch import KernelLayout
from pmdb.os.linux.mm.kernel_memory import KernelMemory, kernel_parts
from pmdb.symbols.kmodules import KernelModule, RegistryOffsets
from pmdb.symbols.table import SymbolTable

_MAX_VMAP_AREAS = 1 << 20
_MAX_SYMBOL_GAP = 1 << 20  # a symbol without a size names at most this far past it

# where the kernel image's sections start and end, by the linker's symbols
_IMAGE_SECTIONS = (("_stext", "_etext", "text"), ("__start_rodata", "__end_rodata", "rodata"),
                   ("_sdata", "_edata", "data"), ("__init_begin", "__init_end", "init"),
                   ("__bss_start", "__bss_stop", "bss"))


class TaskStack(NamedTuple):
    """A task's kernel stack: ``task->stack`` .. ``+ THREAD_SIZE`` (a tuple: ten thousand
    are made for ::whatis's index, where a frozen dataclass costs several times more)."""

    task: int
    pid: int
    comm: str
    base: int


@dataclass
class AddressFacts:
    """What address description needs, gathered once per target; tasks are read lazily."""

    space: AddressSpace
    layout: KernelLayout
    symbols: SymbolTable
    info: VmcoreInfo
    thread_size: int
    modules: Sequence[KernelModule] = ()
    stacks: Callable[[], Iterable[TaskStack]] = lambda: ()
    _vmap: list[tuple[int, int]] | None = field(default=None, repr=False)
    _stacks: list[TaskStack] | None = field(default=None, repr=False)
    _bases: list[int] = field(default_factory=list, repr=False)

    def task_stacks(self) -> list[TaskStack]:
        if self._stacks is None:
            self._stacks = sorted(self.stacks(), key=lambda s: s.base)
            self._bases = [s.base for s in self._stacks]
        return self._stacks

    def stack_holding(self, addr: int) -> TaskStack | None:
        """The task stack addr is on (bisected), or None."""
        stacks = self.task_stacks()
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0 and addr < stacks[i].base + self.thread_size:
            return stacks[i]
        return None

    def vmap_areas(self) -> list[tuple[int, int]]:
        if self._vmap is None:
            self._vmap = read_vmap_areas(self.space, self.info)
        return self._vmap


# -- ::whatis ---------------------------------------------------------------------

def describe(facts: AddressFacts, addr: int) -> list[str]:
    """Every true statement pmdb can make about addr, most specific first."""
    region = facts.layout.region(addr)
    lines: list[str] = []
    if region in ("kernel image", "module space"):
        lines += _describe_code_or_data(facts, addr, region)
    stack = _task_stack(facts, addr)
    if stack is not None:
        lines.append(f"{addr:x} is in the kernel stack of pid {stack.pid} ({stack.comm}), task "
                     f"{stack.task:x}: stack {stack.base:x}-{stack.base + facts.thread_size:x}, "
                     f"+{addr - stack.base:#x}")
    lines += _describe_percpu(facts, addr)
    if region == "direct map":
        lines.append(_describe_direct(facts, addr))
    elif region == "vmalloc":
        lines.append(_describe_vmalloc(facts, addr))
    elif region == "vmemmap":
        lines.append(_describe_vmemmap(facts, addr))
    elif region == "user" and not lines:
        lines.append(f"{addr:x} is a user-space address (below the kernel's half of the address space)")
    elif not lines:
        lines.append(f"{addr:x} is in no kernel region pmdb knows ({region})")
    return lines


def _describe_code_or_data(facts: AddressFacts, addr: int, region: str) -> list[str]:
    hit = facts.symbols.resolve(addr)
    if hit is not None and not hit[0].contains(addr) and hit[1] > _MAX_SYMBOL_GAP:
        hit = None
    if region == "kernel image":
        where = f"in the kernel image ({_image_section(facts.symbols, addr)})"
        if hit is None:
            return [f"{addr:x} is {where}"]
        sym, off = hit
        return [f"{addr:x} is {_sym_text(sym.name, off)} {where}"]
    mod = next((m for m in facts.modules if m.base <= addr < m.base + m.size), None)
    if hit is not None and hit[0].module is not None:
        sym, off = hit
        return [f"{addr:x} is {_sym_text(sym.name, off)} [{sym.module}]"]
    if mod is not None:
        return [f"{addr:x} is in module {mod.name} ({mod.base:x}-{mod.base + mod.size:x}, "
                f"+{addr - mod.base:#x}), not in any of its symbols"]
    return [f"{addr:x} is in module space, in no loaded module"]


def _sym_text(name: str, off: int) -> str:
    return f"{name}+{off:#x}" if off else name


def _image_section(symbols: SymbolTable, addr: int) -> str:
    for start, end, label in _IMAGE_SECTIONS:
        s, e = symbols.lookup(start), symbols.lookup(end)
        if s is not None and e is not None and s.addr <= addr < e.addr:
            return label
    return "other"


def _task_stack(facts: AddressFacts, addr: int) -> TaskStack | None:
    return facts.stack_holding(addr)


def _describe_percpu(facts: AddressFacts, addr: int) -> list[str]:
    """Per-CPU variables: link-time offsets in [__per_cpu_start, __per_cpu_end) plus a CPU's base."""
    start, end = facts.symbols.lookup("__per_cpu_start"), facts.symbols.lookup("__per_cpu_end")
    if start is None or end is None:
        return []
    try:
        offsets = facts.layout.per_cpu_offsets()
    except PmdbError:
        return []
    if start.addr <= addr < end.addr:   # a per-CPU symbol's own value is an offset, not an address
        hit = facts.symbols.resolve(addr)
        name = _sym_text(hit[0].name, hit[1]) if hit is not None else "per-CPU data"
        copies = ", ".join(f"cpu {cpu} at {facts.layout.per_cpu_address(addr, cpu):x}" for cpu in range(len(offsets)))
        return [f"{addr:x} is the per-CPU offset of {name}: {copies}"]
    for cpu, base in enumerate(offsets):
        rel = addr - base
        if start.addr <= rel < end.addr:
            hit = facts.symbols.resolve(rel)
            what = _sym_text(hit[0].name, hit[1]) if hit is not None and hit[0].addr >= start.addr else ""
            name = f" {what}" if what else ""
            return [f"{addr:x} is in cpu {cpu}'s per-CPU area{name} (offset {rel:#x})"]
    return []


def _page_struct(facts: AddressFacts, pfn: int) -> int:
    return facts.layout.vmemmap_base + pfn * facts.info.sizes.get("page", 64)


def _describe_direct(facts: AddressFacts, addr: int) -> str:
    phys = addr - facts.layout.page_offset_base
    pfn = phys >> 12
    return (f"{addr:x} is direct-mapped physical {phys:#x} (pfn {pfn:#x}, "
            f"struct page {_page_struct(facts, pfn):x})")


def _describe_vmalloc(facts: AddressFacts, addr: int) -> str:
    try:
        phys: str = f"physical {facts.space.mapping(addr, 1)[0].offset:#x}"
    except FaultError:
        phys = "not mapped"
    try:
        areas = facts.vmap_areas()
    except PmdbError:
        areas = []
    i = bisect.bisect_right([a for a, _ in areas], addr) - 1
    if i >= 0 and addr < areas[i][1]:
        start, end = areas[i]
        return f"{addr:x} is in vmalloc area {start:x}-{end:x}, +{addr - start:#x} ({phys})"
    return f"{addr:x} is in vmalloc space, in no vmap area ({phys})"


def _describe_vmemmap(facts: AddressFacts, addr: int) -> str:
    size = facts.info.sizes.get("page", 64)
    pfn, off = divmod(addr - facts.layout.vmemmap_base, size)
    tail = f"+{off:#x} into " if off else ""
    return f"{addr:x} is {tail}struct page for pfn {pfn:#x} (physical {pfn << 12:#x})"


def read_vmap_areas(space: AddressSpace, info: VmcoreInfo) -> list[tuple[int, int]]:
    """(va_start, va_end) of every vmap area on ``vmap_area_list``, sorted; VMCOREINFO has the offsets."""
    head = info.symbols.get("vmap_area_list")
    if head is None:
        return []
    start_off = info.offsets.get("vmap_area.va_start", 0)
    list_off = info.offsets.get("vmap_area.list")
    if list_off is None:
        return []
    out: list[tuple[int, int]] = []
    node = space.ptr(head)
    while node != head:
        if len(out) > _MAX_VMAP_AREAS:
            raise CorruptionError(node, "vmap_area_list does not return to its head")
        area = node - list_off
        # va_end follows va_start in struct vmap_area since 2.6.28
        start, end = space.unpack("QQ", area + start_off)
        out.append((start, end))
        node = space.ptr(node)
    out.sort()
    return out


def facts_from(km: KernelMemory, stacks: Callable[[], Iterable[TaskStack]] | None = None) -> AddressFacts:
    """AddressFacts for a kernel's memory; ``stacks`` lists the task stacks when asked."""
    return AddressFacts(km.space, km.layout, km.symbols, km.info, km.arch.thread_size(km.lookup),
                        km.modules, stacks or (lambda: ()))


def task_stacks(owner: Any) -> list[TaskStack]:
    """Every task's stack base, from the threads (kernel tasks) and BTF's task_struct;
    owner is a kernel Target or its OS model (both have ``types`` and ``threads()``)."""
    parts = kernel_parts(owner)
    try:
        offset = RegistryOffsets(owner.types).offsetof("task_struct", "stack")
    except (PmdbError, AttributeError):
        return []
    if parts is None:
        return []
    tasks = getattr(getattr(owner, "os", owner), "tasks", None)
    if tasks is not None:     # the task list read task_struct.stack already: no read per task
        try:
            listed = [TaskStack(t.address, t.pid, t.comm, t.stack) for t in tasks() if t.stack]
        except PmdbError:
            listed = []
        if listed:
            return listed
    out = []
    for t in owner.threads():
        if t.address is None:
            continue
        try:
            out.append(TaskStack(t.address, t.id, t.name, parts.space.ptr(t.address + offset)))
        except FaultError:
            continue
    return out


def describe_kernel_address(owner: Any, addr: int) -> list[str] | None:
    """::whatis for a kernel Target (or its OS model); None when it is not a kernel dump."""
    parts = kernel_parts(owner)
    if parts is None:
        return None
    facts = getattr(owner, "_address_facts", None)
    if facts is None:
        facts = facts_from(parts, stacks=lambda: task_stacks(owner))
        owner._address_facts = facts   # tasks and vmap areas are read once
    return describe(facts, addr)
