"""The values every OS model hands out: a Thread (registers, name, ids) and a Mapping.

They sit below every layer that makes or shows them (symbols' object files,
the user and kernel models, the emulator, the target and dcmds), so this
module imports nothing from pmdb.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Thread:
    """One thread of execution: a user thread, a kernel task, a CPU."""

    id: int                       # tid / pid / cpu: what the user types to pick it
    registers: dict[str, int]
    name: str = ""
    index: int = 0                # 1-based position, as gdb numbers threads
    address: int | None = None    # e.g. the task_struct, for kernel threads
    signal: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapping:
    """One mapped range of an address space, as a user core or /proc/PID/maps names it."""

    start: int
    end: int
    perms: str                    # "r-x", "rw-" ...
    offset: int = 0
    path: str = ""
    in_dump: bool = True          # False when the dump left the bytes out

    @property
    def size(self) -> int:
        return self.end - self.start
