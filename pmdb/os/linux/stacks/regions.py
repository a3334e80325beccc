"""The stacks a kernel backtrace may cross, as bounded regions, and which one holds an address.

Every CPU has the same kinds of stack (the task's own, interrupt stacks,
exception stacks); where they are is each architecture's business
(pmdb.os.linux.arch.<cpu>), what a region is and how to find the one an
address is on is not.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StackRegion:
    """One stack: [lo, hi), what it is ("task", "IRQ", "#DB" ...) and whose CPU."""

    name: str
    lo: int
    hi: int
    cpu: int | None = None

    def contains(self, addr: int, n: int = 8) -> bool:
        return self.lo <= addr and addr + n <= self.hi

    def __str__(self) -> str:
        owner = f" of CPU {self.cpu}" if self.cpu is not None else ""
        return f"{self.name} stack{owner} {self.lo:#x}-{self.hi:#x}"


class StackMap:
    """Which stack an address is on: a task's own, then the CPUs' stacks (bisected)."""

    def __init__(self, regions: Iterable[StackRegion]) -> None:
        self.regions = sorted(regions, key=lambda r: r.lo)
        self._los = [r.lo for r in self.regions]

    def find(self, addr: int, task: StackRegion | None = None, n: int = 8) -> StackRegion | None:
        if task is not None and task.contains(addr, n):
            return task
        i = bisect.bisect_right(self._los, addr) - 1
        if i >= 0 and self.regions[i].contains(addr, n):
            return self.regions[i]
        return None
