"""In-dump fuzz targets: a real fixture dump whose memory is damaged copy-on-write.

Each target names the regions of kernel memory it may damage (the structures a
reader walks: task_structs, the printk ring, kmem_caches and slab pages, the
kallsyms tables, BTF, ORC entries and a stack) and what it runs over the damaged
memory: pmdb's own readers, or dcmds in a Session whose every ``internal error``
is a finding. The base dump is opened once per process; each input gets a fresh
kernel model over an Overlay, so no cached answer hides the damage.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from pathlib import Path

from pmdb.config import Config
from pmdb.opener import open_target
from pmdb.os.linux.kernel import LinuxKernel
from pmdb.target import Target
from tests.conftest import FIXTURES
from tests.fuzz.harness import FuzzTarget, Patches, Region, decode_patches, expect_pmdb_errors, run_lines
from tests.fuzz.overlay import Overlay, patched_kernel

KASLR_DUMP = FIXTURES / "linux-6.1-x86_64" / "dump.202611221942"
SLUB_DUMP = FIXTURES / "linux-6.1-x86_64-slub" / "dump.202611222031"


@functools.cache
def base(path: Path) -> Target:
    """The fixture opened once (its BTF from pmdb's cache after the first open). Its decompressed
    pages stay cached for the whole campaign (128 MB at most rather than pmdb's 4 MB): every input
    rereads the same undamaged pages below the overlay, and decompressing them again each time
    (5 MB of BTF: 20 ms) tested nothing."""
    from pmdb.dumps import kdump

    kdump.PAGE_CACHE_PAGES = max(kdump.PAGE_CACHE_PAGES, 32768)
    return open_target(str(path), config=Config())


def kernel_of(t: Target) -> LinuxKernel:
    assert isinstance(t.os, LinuxKernel)
    return t.os


def _sym(t: Target, name: str) -> int:
    sym = t.symbols.lookup(name)
    assert sym is not None, name
    return sym.addr


def _sizeof(t: Target, spelling: str) -> int:
    return t.types.lookup(spelling).sizeof()


def _member(t: Target, spelling: str, member: str) -> int:
    found = t.types.lookup(spelling).find_member(member)
    assert found is not None, (spelling, member)
    return found[1] // 8


# -- regions: what each target damages -------------------------------------------------------

def regions_tasks(t: Target) -> list[Region]:
    k = kernel_of(t)
    size = _sizeof(t, "struct task_struct")
    tasks = [task.address for task in k.tasks()[:6]]
    return [(_sym(t, "init_task"), size)] + [(a, size) for a in tasks if a != _sym(t, "init_task")]


def regions_printk(t: Target) -> list[Region]:
    from pmdb.os.linux.printk.ring import RingLayout

    k = kernel_of(t)
    lay = RingLayout.from_vmcoreinfo(k.km.info)
    prb_var = _sym(t, "prb")
    prb = t.memory.u64(prb_var)
    descs = t.memory.u64(prb + lay.desc_ring + lay.descs)
    infos = t.memory.u64(prb + lay.desc_ring + lay.infos)
    data = t.memory.u64(prb + lay.text_ring + lay.data)
    return [(prb_var, 8), (prb, 0x80), (descs, 0x1000), (infos, 0x1000), (data, 0x2000)]


def regions_slab(t: Target) -> list[Region]:
    from pmdb.os.linux.slab.audit import cache_slabs
    from pmdb.os.linux.slab.slub import SlubModel

    k = kernel_of(t)
    km = k.km
    model = SlubModel(km.space, km.layout, km.info, km.lookup, t.types)
    caches = model.caches()
    size = _sizeof(t, "struct kmem_cache")
    out: list[Region] = [(_sym(t, "slab_caches"), 16)] + [(c.address, size) for c in caches[:4]]
    chosen = next(c for c in caches if c.name == "kmalloc-128")
    out.append((chosen.address, size))
    for view in list(cache_slabs(model, chosen, []))[:2]:
        out.append((view.slab.page, _sizeof(t, "struct slab")))
        out.append((view.slab.base, min(chosen.slab_bytes, 0x1000)))
    return out


def regions_kallsyms(t: Target) -> list[Region]:
    names = ("kallsyms_num_syms", "kallsyms_relative_base", "kallsyms_token_table",
             "kallsyms_token_index", "kallsyms_names", "kallsyms_offsets")
    sizes = (8, 8, 0x400, 0x200, 0x2000, 0x1000)
    info = kernel_of(t).km.info        # the tables' own names are not in kallsyms: VMCOREINFO's
    return [(info.symbol(n), s) for n, s in zip(names, sizes, strict=True)]


def regions_btf(t: Target) -> list[Region]:
    start = _sym(t, "__start_BTF")
    size = _sym(t, "__stop_BTF") - start
    return [(start, 0x20), (start + 0x18, 0x4000), (start + size // 2, 0x2000), (start + size - 0x4000, 0x4000)]


def regions_orc(t: Target) -> list[Region]:
    """The ORC entries of the panic task's frames, and the stack they unwind."""
    k = kernel_of(t)
    task = k.panic_task()
    assert task is not None
    frames = k.unwind_task(task.address)
    start, entries = _sym(t, "__start_orc_unwind_ip"), _sym(t, "__start_orc_unwind")
    count = (_sym(t, "__stop_orc_unwind_ip") - start) // 4
    ips = [start + 4 * i + t.memory.read_int(start + 4 * i, 4, signed=True) for i in range(count)]
    out: list[Region] = []
    for f in frames[:8]:
        i = max(bisect.bisect_right(ips, f.pc) - 1, 0)
        out += [(start + 4 * i, 8), (entries + 6 * i, 12)]
    sp = frames[0].sp if frames else 0
    if sp:
        out.append((sp & ~7, 0x800))
    return out


def regions_modules(t: Target) -> list[Region]:
    k = kernel_of(t)
    size = _sizeof(t, "struct module")
    return [(_sym(t, "modules"), 16)] + [(m.address, size) for m in k.modules()[:3]]


def regions_lists(t: Target) -> list[Region]:
    """The links list and tree walks follow: each task's ``tasks`` list_head and CFS
    ``se.run_node``, the modules' ``list``, and each CPU's CFS tree root and RT queues."""
    k = kernel_of(t)
    tasks_at, node_at = _member(t, "struct task_struct", "tasks"), _member(t, "struct task_struct", "se")
    node_at += _member(t, "struct sched_entity", "run_node")
    out: list[Region] = [(_sym(t, "modules"), 16)]
    for task in k.tasks()[:24]:
        out += [(task.address + tasks_at, 16), (task.address + node_at, 24)]
    list_at = _member(t, "struct module", "list")
    out += [(m.address + list_at, 16) for m in k.modules()[:3]]
    cfs = _member(t, "struct rq", "cfs") + _member(t, "struct cfs_rq", "tasks_timeline")
    rt = _member(t, "struct rq", "rt") + _member(t, "struct rt_rq", "active")
    for cpu in k.cpus():
        if cpu.runqueue:
            out += [(cpu.runqueue + cfs, 16), (cpu.runqueue + rt, 0x100)]
    return out


def regions_maple(t: Target) -> list[Region]:
    """crashapp's mm: its maple_tree, the root node, and three of its VMAs (vm reads them)."""
    from pmdb.os.linux.mm.maple import MapleLayout

    k = kernel_of(t)
    mm = next(task.mm for task in k.tasks() if task.pid == 102)
    tree = mm + _member(t, "struct mm_struct", "mm_mt")
    lay = MapleLayout.from_types(t.types)
    root = t.memory.ptr(tree + lay.root) & ~0xFF
    vmas = [t.memory.ptr(root + lay.r64_slot + 8 * i) for i in (1, 2, 6)]
    return [(tree, 24), (root, lay.node_size)] + [(v, _sizeof(t, "struct vm_area_struct")) for v in vmas if v]


def check_maple(t: Target) -> None:
    """The reader itself (pmdb.os.linux.mm.maple), then the commands built on it."""
    from pmdb.os.linux.mm.maple import MapleLayout, maple_entries

    k = kernel_of(t)
    mm = next(task.mm for task in k.tasks() if task.pid == 102)
    tree = mm + _member(t, "struct mm_struct", "mm_mt")
    expect_pmdb_errors(lambda: list(maple_entries(t.memory, MapleLayout.from_types(t.types), tree)))
    run_lines(t, ("vm 102", f"tree -t maple -v -p {tree:x}", "0t102::pmap"))


# -- what runs over the damage ---------------------------------------------------------------

def check_lines(*lines: str) -> Callable[[Target], None]:
    def check(t: Target) -> None:
        run_lines(t, lines)
    return check


def check_kallsyms(t: Target) -> None:
    from pmdb.symbols.kallsyms import KallsymsTables, load_kallsyms

    km = kernel_of(t).km

    def go() -> None:
        syms = load_kallsyms(t.memory, KallsymsTables.from_vmcoreinfo(km.info))
        for name in ("init_task", "prb", "__start_BTF"):
            syms.indices_named(name)
        for i in range(0, len(syms), max(len(syms) // 64, 1)):
            syms.symbol(i)
    expect_pmdb_errors(go)


def check_btf(t: Target) -> None:
    from pmdb.types.btf import BtfTypes

    start = _sym(t, "__start_BTF")
    size = _sym(t, "__stop_BTF") - start

    def go() -> None:
        btf = BtfTypes(t.memory, offset=start, size=size, ptr_size=8)
        for name in ("task_struct", "list_head", "kmem_cache", "module"):
            found = btf.find_type(name, "struct")
            if found is not None:
                for m in found.members[:40]:
                    str(m.type)
                    m.type.sizeof()
    expect_pmdb_errors(go)


def check_modules(t: Target) -> None:
    from pmdb.symbols.kmodules import RegistryOffsets, read_modules

    expect_pmdb_errors(lambda: read_modules(t.memory, _sym(t, "modules"), RegistryOffsets(t.types)))
    run_lines(t, ["::whatis ffffffffc023b000"])


def in_dump(name: str, doc: str, dump: Path, regions: Callable[[Target], list[Region]],
            check: Callable[[Target], None]) -> FuzzTarget:
    """A FuzzTarget that damages ``regions`` of ``dump`` and runs ``check`` over it."""

    @functools.cache
    def where() -> tuple[Region, ...]:
        return tuple(regions(base(dump)))

    def to_patches(data: bytes) -> Patches:
        return decode_patches(data, where())

    def replay(patches: Patches) -> None:
        damaged = _damaged(base(dump), patches)
        if damaged is not None:
            check(damaged)

    def run(data: bytes) -> None:
        replay(to_patches(data))

    def seeds() -> list[bytes]:
        return [b"", bytes(5), b"\xff" * 40, bytes(range(64))]

    return FuzzTarget(name, doc, run, seeds, dump, to_patches, replay, lambda: base(dump), ("in-dump",))


def _damaged(t: Target, patches: Patches) -> Target | None:
    """A fresh kernel target over the damaged memory; None when even that fails cleanly."""
    result: list[Target] = []
    expect_pmdb_errors(lambda: result.append(patched_kernel(t, patches)))
    return result[0] if result else None


TARGETS = [
    in_dump("tasks", "task_structs: the task list, pids, parents, threads (::ps, ::ptree, ::pgrep)",
            KASLR_DUMP, regions_tasks, check_lines("::ps", "::ptree", "::pgrep -x bash", "::walk task")),
    in_dump("printk", "the printk ring: descriptors, infos, text data (::msgbuf, ::log, ::status)",
            KASLR_DUMP, regions_printk, check_lines("::msgbuf", "log", "::status")),
    in_dump("slab", "SLUB: slab_caches, kmem_caches, slabs and freelists (::kmastat, ::kmem_verify)",
            SLUB_DUMP, regions_slab, check_lines("::kmastat", "::kmem_verify kmalloc-128", "kmem -S kmalloc-128")),
    in_dump("kallsyms", "kallsyms: token table and index, names stream, offsets, relative base",
            KASLR_DUMP, regions_kallsyms, check_kallsyms),
    in_dump("btf", "vmlinux BTF read from the dump: header, types, strings",
            KASLR_DUMP, regions_btf, check_btf),
    in_dump("orc", "ORC entries and a kernel stack: the unwinder ($c, ::findstack, ::stacks)",
            KASLR_DUMP, regions_orc, check_lines("$c", "::stacks")),
    in_dump("lists", "list_head and rbtree walks: ::list, ::walk list, crash's list and runq",
            KASLR_DUMP, regions_lists,
            check_lines("init_task::list task_struct tasks | ::print task_struct pid",
                        "list task_struct.tasks -s task_struct.pid -h init_task",
                        "list -H modules module.list -s module.name", "modules::walk list", "runq")),
    in_dump("modules", "the modules list and struct module (symbols of loaded modules)",
            KASLR_DUMP, regions_modules, check_modules),
    in_dump("maple", "a process's maple tree (mm_mt): its root node and VMAs (vm, tree -t maple, ::pmap)",
            KASLR_DUMP, regions_maple, check_maple),
]


def with_overlay(t: Target, patches: Patches) -> Overlay:
    """The target's memory with patches (for callers outside the kernel model)."""
    return Overlay(t.memory, patches)
