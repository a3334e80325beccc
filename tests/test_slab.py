"""SLUB caches, slabs and objects against crash's ``kmem`` on every kernel fixture.

Oracles: crash 8.0.6's ``kmem -s`` (every cache: name, object size, allocated,
total, slabs, slab size), ``kmem -S kmalloc-128`` and ``kmem -S <address>``
(after ``set redzone off``, which prints object addresses) in each folder's
crash-oracle.txt, and crash's ``ps`` for task_struct addresses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pmdb.os.linux.slab.audit import cache_slabs
from pmdb.os.linux.slab.slub import slub_model
from pmdb.os.linux.slab.text import describe_slab_address
from tests.linux_session import SLUB, crash_ps, run, target_for
from tests.linux_vmcore import KASLR, NOKASLR, crash_section, crash_sections

FOLDERS = [(KASLR, "dump.202611221942"), (NOKASLR, "dump.202611221946"), (SLUB, "dump.202611222031")]
IDS = [f.name for f, _ in FOLDERS]
_ROW = re.compile(r"^([0-9a-f]{16})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+k)\s+(\S+)$")


def _crash_kmem_s(folder: Path) -> dict[int, tuple[str, int, int, int, int, str]]:
    """{cache address: (name, objsize, allocated, total, slabs, ssize)} from crash's kmem -s."""
    out = {}
    for line in crash_section(folder, "kmem -s"):
        m = _ROW.match(line)
        if m:
            addr, objsize, alloc, total, slabs, ssize, name = m.groups()
            out[int(addr, 16)] = (name, int(objsize), int(alloc), int(total), int(slabs), ssize)
    assert len(out) > 100, "crash's kmem -s section was not found"
    return out


@pytest.mark.parametrize(("folder", "name"), FOLDERS, ids=IDS)
def test_kmastat_agrees_with_crash_for_every_cache(folder: Path, name: str) -> None:
    expected = _crash_kmem_s(folder)
    out, err = run(target_for(folder, name), "::kmastat")
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["CACHE", "NAME", "OBJSIZE", "INUSE", "TOTAL", "SLABS", "SSIZE", "MEMORY"]
    got = {}
    for line in lines[1:]:
        addr, cname, objsize, inuse, total, slabs, ssize, memory = line.split()
        got[int(addr, 16)] = (cname, int(objsize), int(inuse), int(total), int(slabs), ssize)
        assert memory == f"{int(slabs) * int(ssize[:-1])}k"
    assert got == expected


@pytest.mark.parametrize(("folder", "name"), FOLDERS, ids=IDS)
def test_kmem_s_prints_crash_lines(folder: Path, name: str) -> None:
    out, err = run(target_for(folder, name), "kmem -s")
    assert err == ""
    assert out.splitlines() == [line for line in crash_section(folder, "kmem -s") if line.strip()]


@pytest.mark.parametrize(("folder", "name"), FOLDERS, ids=IDS)
def test_walkers_count_crash_allocated_and_free(folder: Path, name: str) -> None:
    """Objects found slab by slab (page scan, freelists, CPU freelists) add up to crash's totals."""
    expected = _crash_kmem_s(folder)
    model = slub_model(target_for(folder, name))
    for cache in model.caches():
        problems: list[str] = []
        allocated = free = 0
        for view in cache_slabs(model, cache, problems):
            allocated += len(view.objects.allocated())
            free += len(view.objects.free)
        assert problems == []
        _, _, alloc_crash, total_crash, _, _ = expected[cache.address]
        assert (allocated, allocated + free) == (alloc_crash, total_crash), cache.name


def test_walk_kmem_task_struct_holds_every_task() -> None:
    t = target_for(KASLR, "dump.202611221942")
    out, err = run(t, "::walk kmem task_struct")
    assert err == ""
    walked = {int(w, 16) for w in out.split()}
    tasks = {row.task for row in crash_ps(KASLR) if row.comm != "[swapper/0]"}  # init_task is static
    assert tasks <= walked
    crash_alloc = next(v for v in _crash_kmem_s(KASLR).values() if v[0] == "task_struct")[2]
    assert len(walked) == crash_alloc
    out, _ = run(t, "::walk kmem_cache")
    assert {int(w, 16) for w in out.split()} == set(_crash_kmem_s(KASLR))


@pytest.mark.parametrize(("folder", "name"), FOLDERS, ids=IDS)
def test_whatis_names_task_struct_and_object_start(folder: Path, name: str) -> None:
    t = target_for(folder, name)
    model = slub_model(t)
    size = next(c.object_size for c in model.caches() if c.name == "task_struct")
    rows = [r for r in crash_ps(folder) if r.comm != "[swapper/0]"]
    assert len(rows) > 50
    for row in rows:
        for off in (0, 0x10, size - 1):
            lines = describe_slab_address(t, row.task + off)
            assert lines is not None, hex(row.task)
            where = f"the start of object {row.task:x}" if off == 0 else f"{row.task:x}+{off:#x}"
            assert lines[0].startswith(f"{row.task + off:x} is {where}, an allocated task_struct object "
                                       f"(size {size}) in slab "), lines[0]
            assert lines[0].endswith(" of cache task_struct "
                                     f"({next(c.address for c in model.caches() if c.name == 'task_struct'):x})")
    assert describe_slab_address(t, t.symbols.lookup("jiffies").addr) is None   # type: ignore[union-attr]


def test_kmem_S_cache_matches_crash() -> None:
    out, err = run(target_for(SLUB, "dump.202611222031"), "kmem -S kmalloc-128")
    assert err == ""
    crash = [line for line in crash_section(SLUB, "kmem -S kmalloc-128") if line.strip()]
    assert out.splitlines() == crash


def test_kmem_S_address_matches_crash_with_redzone_off() -> None:
    """crash lists object addresses once ``set redzone off``; its last kmem -S section."""
    out, err = run(target_for(SLUB, "dump.202611222031"), "kmem -S ffff88d082d28380")
    assert err == ""
    crash = [line.rstrip() for line in crash_sections(SLUB, "kmem -S ffff88d082d28380")[-1] if line.strip()]
    assert [line.rstrip() for line in out.splitlines()] == crash


def test_kmem_address_names_cache_slab_and_object() -> None:
    out, _ = run(target_for(SLUB, "dump.202611222031"), "kmem ffff88d082d28390")
    crash = crash_section(SLUB, "kmem ffff88d082d28380")
    assert out.splitlines()[:5] == crash[:5]
    # crash prints the slot ([ffff88d082d28300]) with red zones on; pmdb the object, 0x80 further
    slot = int(crash[5].strip(" []"), 16)
    assert out.splitlines()[5] == f"  [{slot + 0x80:x}]"


def test_audit_without_tracks_says_so() -> None:
    t = target_for(KASLR, "dump.202611221942")
    task = crash_ps(KASLR)[2].task
    out, err = run(t, f"{task:x}::bufctl_audit", "::kmalog -c task_struct", "::kmalog")
    assert out.splitlines()[-1] == ("  the dump has no tracks for cache task_struct "
                                    "(it was not booted with slub_debug=U for it)")
    assert err.splitlines() == [
        "pmdb: the dump has no tracks for cache task_struct (the kernel was not booted with slub_debug=U)",
        "pmdb: the dump has no tracks for any cache (the kernel was not booted with slub_debug=U)"]


def test_kmem_verify_clean_without_slub_debug() -> None:
    out, err = run(target_for(KASLR, "dump.202611221942"), "::kmem_verify")
    assert err == ""
    rows = out.splitlines()[1:]
    assert len(rows) == len(_crash_kmem_s(KASLR))
    assert all(r.endswith("clean (freelists only: no slub_debug)") for r in rows)


def test_page_window_reads_what_the_dump_says() -> None:
    """The freelist reader that keeps pages: every word it gives is the word the dump holds,
    a word across a page end included; an unreadable address faults as a direct read does;
    and every CPU freelist walked through it is the one walked through direct reads."""
    from pmdb.errors import FaultError
    from pmdb.os.linux.slab.objects import PageWindow, walk_freelist

    t = target_for(KASLR, "dump.202611221942")
    model = slub_model(t)
    read = PageWindow(model, pages=2)
    base = t.symbols.lookup("init_task").addr                                # type: ignore[attr-defined]
    page = (base + 0xFFF) & ~0xFFF
    for addr in [page + 8 * i for i in range(40)] + [page + 4092, page + 0x1000 + 16, page + 0x2000,
                                                      page + 0x3000 - 3, page]:
        assert read(addr) == t.memory.ptr(addr), hex(addr)
    with pytest.raises(FaultError) as direct:
        t.memory.ptr(0x10)
    with pytest.raises(FaultError) as windowed:
        read(0x10)
    assert str(windowed.value) == str(direct.value)
    links = 0
    for cache in model.caches():
        for cpu in model.cpu_slabs(cache):
            if cpu.slab:
                slab = model.read_slab(cpu.slab)
                windowed_walk = walk_freelist(cache, slab, cpu.freelist, PageWindow(model, pages=2), "cpu")
                assert windowed_walk == walk_freelist(cache, slab, cpu.freelist, t.memory.ptr, "cpu"), cache.name
                links += len(windowed_walk[0])
    assert links > 1000
