"""A sleeping task's thread, whose saved registers are read from its stack only when asked.

Listing 10,000 tasks as threads should not read 10,000 kernel stacks: ``::ps`` and
``::stacks`` never look at a thread's registers (the unwinder finds the saved frame
itself), and ``$r`` of one task looks at one set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pmdb.threads import Thread


class TaskThread(Thread):
    """A Thread whose ``registers`` come from ``load()`` the first time they are read."""

    def __init__(self, load: Callable[[], dict[str, int]], **fields: Any) -> None:
        super().__init__(registers={}, **fields)
        self._load: Callable[[], dict[str, int]] | None = load

    @property  # type: ignore[override]
    def registers(self) -> dict[str, int]:
        load = getattr(self, "_load", None)
        if load is not None:
            self._load = None
            self._registers = load()
        return self._registers

    @registers.setter
    def registers(self, value: dict[str, int]) -> None:
        self._load = None
        self._registers = value
