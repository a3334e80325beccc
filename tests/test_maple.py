"""The maple tree reader (pmdb.os.linux.mm.maple) on real 6.1 dumps, and on damaged copies.

The oracle is the kernel's own bookkeeping: every entry of an mm's mm_mt is a VMA whose
[vm_start, vm_end) is exactly the entry's range and whose vm_mm is that mm, and there are
mm->map_count of them; on a lab dump, the guest's /proc/PID/maps lists the same ranges.
Damage (through a copy-on-write overlay of the real dump, as the fuzz targets do) must end
a walk with a CorruptionError, never another exception or a hang.
"""

from __future__ import annotations

import random

import pytest

from pmdb.errors import CorruptionError, PmdbError
from pmdb.os.linux.mm.maple import (
    ARANGE_64,
    LEAF_64,
    RANGE_64,
    MapleLayout,
    MapleNode,
    MapleWalk,
    maple_entries,
)
from pmdb.target import Target
from pmdb.types.value import Object
from tests import kernel_truth as kt
from tests.fuzz.overlay import Overlay, words
from tests.linux_session import KASLR, target_for

DUMP = "dump.202611221942"


def _mms(t: Target) -> list[tuple[int, int]]:
    """(pid, mm) of every user process."""
    return [(task.pid, task.mm) for task in t.os.tasks() if task.mm]     # type: ignore[attr-defined]


def _mt(t: Target, mm: int) -> int:
    return mm + t.types.lookup("struct mm_struct").find_member("mm_mt")[1] // 8   # type: ignore[index]


def test_every_entry_is_the_vma_of_its_range() -> None:
    t = target_for(KASLR, DUMP)
    lay = MapleLayout.from_types(t.types)
    vma_type, mm_type = t.types.lookup("struct vm_area_struct"), t.types.lookup("struct mm_struct")
    mms = _mms(t)
    assert len(mms) == 8
    for pid, mm in mms:
        entries = list(maple_entries(t.memory, lay, _mt(t, mm)))
        assert len(entries) == int(Object(t.memory, mm_type, mm).member("map_count")), pid
        for first, last, entry in entries:
            vma = Object(t.memory, vma_type, entry)
            assert (int(vma.vm_start), int(vma.vm_end) - 1, int(vma.vm_mm)) == (first, last, mm), pid
        assert all(a.last < b.first for a, b in zip(entries, entries[1:], strict=False))


def _leaf(t: Target) -> tuple[int, int, int]:
    """crashapp's tree: (its maple_tree, its root enode, the leaf node's address)."""
    mm = dict(_mms(t))[102]
    tree = _mt(t, mm)
    lay = MapleLayout.from_types(t.types)
    root = t.memory.ptr(tree + lay.root)
    return tree, root, root & ~0xFF


def _walk(t: Target, patches: dict[int, bytes], tree: int) -> list[int]:
    space = Overlay(t.memory, patches)
    return [e.entry for e in maple_entries(space, MapleLayout.from_types(t.types), tree)]


def test_damage_is_corruption() -> None:
    t = target_for(KASLR, DUMP)
    lay = MapleLayout.from_types(t.types)
    tree, root, leaf = _leaf(t)
    assert root & 0xFF == (LEAF_64 << 3) | 6 and len(_walk(t, {}, tree)) == 10
    pivot = leaf + lay.r64_pivot
    cases = {
        "pivots fall": words({pivot + 8: 0x1000}),
        "a node of no type": words({tree + lay.root: leaf | (9 << 3) | 6}),
        "unreadable node": words({tree + lay.root: (1 << 64) - 0x1000 + (LEAF_64 << 3) + 6}),
        # the leaf read as an internal node: its first VMA pointer is no node
        "deeper than the height": words({tree + lay.root: leaf | (RANGE_64 << 3) | 6}),
        # an internal node whose child is itself, the height no bound
        "a loop": words({tree + lay.root: leaf | (RANGE_64 << 3) | 6, tree + lay.flags: 0x7C,
                         leaf + lay.r64_slot: leaf | (RANGE_64 << 3) | 4}),
    }
    for what, patches in cases.items():
        with pytest.raises(CorruptionError):
            _walk(t, patches, tree)
            pytest.fail(what)


def test_an_empty_or_single_entry_tree() -> None:
    t = target_for(KASLR, DUMP)
    lay = MapleLayout.from_types(t.types)
    tree, _, _ = _leaf(t)
    assert _walk(t, words({tree + lay.root: 0}), tree) == []
    assert _walk(t, words({tree + lay.root: 0xffff8be102a71840}), tree) == [0xffff8be102a71840]


def test_garbage_nodes_end_in_pmdb_errors() -> None:
    """Random words over the root node (its type kept: leaf, range or arange), a few hundred
    times: every walk ends, with entries or a pmdb error."""
    t = target_for(KASLR, DUMP)
    lay = MapleLayout.from_types(t.types)
    tree, _, leaf = _leaf(t)
    rng = random.Random(14)
    ends = {"entries": 0, "errors": 0}
    for _ in range(300):
        kind = rng.choice((LEAF_64, RANGE_64, ARANGE_64))
        patches = words({tree + lay.root: leaf | (kind << 3) | 6, tree + lay.flags: rng.randrange(1 << 32)})
        for i in range(0, lay.node_size, 8):
            if rng.random() < 0.5:
                value = rng.choice((0, rng.randrange(1 << 64), leaf | rng.randrange(256), rng.randrange(1 << 16)))
                patches.update(words({leaf + i: value}))
        try:
            _walk(t, patches, tree)
            ends["entries"] += 1
        except PmdbError:
            ends["errors"] += 1
    assert ends["entries"] and ends["errors"]


def test_walk_positions_and_nodes_as_crash_shows_them() -> None:
    """crash's tree -p positions: root/SLOT in a one-node tree (slots with gaps skipped)."""
    t = target_for(KASLR, DUMP)
    tree, _, leaf = _leaf(t)
    walk = MapleWalk(t.memory, MapleLayout.from_types(t.types))
    nodes: list[MapleNode] = []
    walk.on_node = nodes.append
    slots = list(walk.tree(tree))
    assert [s.path for s in slots] == [(1,), (2,), (3,), (4,), (5,), (6,), (8,), (10,), (12,), (13,)]
    assert [(n.address, n.type, n.depth) for n in nodes] == [(leaf, LEAF_64, 0)]


@pytest.mark.parametrize(("release", "name"), [(r, n) for r, n in kt.KERNELS.items() if not r.startswith(("5.", "6.1."))])
def test_sparse_irqs_hold_every_interrupt_of_proc(release: str, name: str) -> None:
    """Since 6.5 the kernel keeps its interrupt descriptors in the maple tree sparse_irqs,
    indexed by IRQ number: every numbered line of the guest's /proc/interrupts is an entry
    whose irq_desc says that number (irq_data.irq), in a tree of more than one node."""
    from pmdb.config import Config
    from pmdb.opener import open_target

    folder = kt.need_lab_dump(release, "sysrq", name)
    irqs = {int(line.split(":")[0]) for line in (folder / "truth" / "interrupts").read_text().splitlines()
            if line.split(":")[0].strip().isdigit()}
    t = open_target(str(folder / name), config=Config())
    sym = t.symbols.lookup("sparse_irqs")
    assert sym is not None and irqs
    walk = MapleWalk(t.memory, MapleLayout.from_types(t.types))
    nodes: list[MapleNode] = []
    walk.on_node = nodes.append
    entries = {s.first: s.entry for s in walk.tree(sym.addr)}
    assert irqs <= set(entries) and len(nodes) > 1
    desc = t.types.lookup("struct irq_desc")
    for irq, entry in entries.items():
        assert int(Object(t.memory, desc, entry).member("irq_data").member("irq")) == irq
