"""The kernel's interrupt descriptors: what crash's ``irq`` and /proc/interrupts show.

With CONFIG_SPARSE_IRQ the descriptors are found by number in ``irq_desc_tree``, a
radix tree (an XArray) up to 6.4; 6.5 moved them to the maple tree ``sparse_irqs`` (an
entry per irq number, or per range of numbers sharing a descriptor's slot); without it
they are the array ``irq_desc[NR_IRQS]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmdb.errors import CommandError, CorruptionError
from pmdb.memory.space import AddressSpace
from pmdb.os.linux.mm.maple import maple_tree_entries
from pmdb.os.linux.mm.xarray import xarray_entries
from pmdb.types.registry import TypeRegistry
from pmdb.types.value import Object

MAX_ACTIONS = 256           # irqactions sharing one line before the chain is called a loop
MAX_RANGE = 1 << 16         # irq numbers one sparse_irqs entry may cover (IRQ_BITMAP_BITS is 8k+)


def irq_descs(mem: AddressSpace, types: TypeRegistry, lookup: Callable[[str], int | None]) -> dict[int, int]:
    """irq number -> its ``struct irq_desc``, for every descriptor the kernel allocated."""
    tree = lookup("irq_desc_tree")
    if tree is not None:
        return {e.index: e.entry for e in xarray_entries(mem, types, tree)}
    tree = lookup("sparse_irqs")
    if tree is not None:
        descs: dict[int, int] = {}
        for e in maple_tree_entries(mem, types, tree):
            if e.last - e.first >= MAX_RANGE:
                raise CorruptionError(tree, f"sparse_irqs holds a range of {e.last - e.first + 1} irqs")
            descs.update(dict.fromkeys(range(e.first, e.last + 1), e.entry))
        return descs
    array = lookup("irq_desc")
    count = lookup("nr_irqs")
    if array is None or count is None:
        raise CommandError("irq: no irq_desc_tree, sparse_irqs or irq_desc in this kernel's symbols")
    size = types.lookup("struct irq_desc").sizeof()
    return {i: array + i * size for i in range(mem.read_int(count, 4))}


def nr_irqs(mem: AddressSpace, lookup: Callable[[str], int | None]) -> int:
    """How many irq numbers the kernel has (``nr_irqs``), crash's row count."""
    addr = lookup("nr_irqs")
    if addr is None:
        addr = lookup("total_nr_irqs")      # 6.13 made nr_irqs static under this name
    if addr is None:
        raise CommandError("irq: no nr_irqs (or total_nr_irqs) in this kernel's symbols")
    return mem.read_int(addr, 4)


@dataclass(frozen=True)
class IrqInfo:
    irq: int
    desc: int
    actions: list[tuple[int, str]]      # (struct irqaction, its name)
    chip: str                           # irq_chip.name ("IO-APIC")
    flow: str                           # irq_desc.name ("edge", "fasteoi")
    counts: list[int]                   # per CPU, from kstat_irqs


def irq_info(mem: AddressSpace, types: TypeRegistry, irq: int, desc: int, per_cpu: list[int]) -> IrqInfo:
    """One descriptor: its actions (the ``action->next`` chain), chip, flow name and per-CPU counts."""
    d = Object(mem, types.lookup("struct irq_desc"), desc)
    actions: list[tuple[int, str]] = []
    action = d.member("action")
    while int(action):
        if len(actions) >= MAX_ACTIONS or int(action) in {a for a, _ in actions}:
            raise CorruptionError(int(action), f"irq {irq}'s irqaction chain loops")
        name = action.deref().member("name")
        actions.append((int(action), name.string().decode("utf-8", "replace") if int(name) else ""))
        action = action.deref().member("next")
    chip = d.member("irq_data").member("chip")
    chip_name = chip.deref().member("name").string().decode("utf-8", "replace") if int(chip) else ""
    flow = d.member("name").string().decode("utf-8", "replace") if int(d.member("name")) else ""
    kstat = int(d.member("kstat_irqs"))
    counts = [mem.read_int(kstat + off, 4) for off in per_cpu] if kstat else [0] * len(per_cpu)
    return IrqInfo(irq, desc, actions, chip_name, flow, counts)
