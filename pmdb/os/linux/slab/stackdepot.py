"""Stack depot records (lib/stackdepot.c) decoded from the dump.

SLUB's tracks, page_owner and KASAN keep a 32-bit handle instead of a stack.
In 6.1 the handle is ``union handle_parts``: ``slabindex`` (16 bits),
``offset`` (10), ``valid`` (1), ``extra`` (5); the record is at
``stack_slabs[slabindex] + (offset << STACK_ALLOC_ALIGN)`` with
STACK_ALLOC_ALIGN 4, a ``struct stack_record`` whose ``size`` return
addresses start at ``entries``. The bit fields and record layout come from
BTF when it has them (they moved to pools in 6.3), the 6.1 values otherwise.
A record also stores its own handle, which is checked, so a handle that
points at the wrong place is caught rather than decoded into nonsense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmdb.errors import CorruptionError, FaultError, PmdbError
from pmdb.types.value import path_offset

STACK_ALLOC_ALIGN = 4
MAX_ENTRIES = 64        # CONFIG_STACKDEPOT users store at most this many frames


@dataclass(frozen=True)
class HandleParts:
    index_bits: tuple[int, int] = (0, 16)
    offset_bits: tuple[int, int] = (16, 10)
    valid_bits: tuple[int, int] = (26, 1)

    @property
    def mask(self) -> int:
        return (1 << max(s + w for s, w in (self.index_bits, self.offset_bits, self.valid_bits))) - 1

    def split(self, handle: int) -> tuple[int, int, int]:
        return tuple(handle >> s & (1 << w) - 1 for s, w in (self.index_bits, self.offset_bits,
                                                             self.valid_bits))  # type: ignore[return-value]


def _handle_parts(types: Any) -> HandleParts:
    union = types.find("union handle_parts") if types is not None else None
    if union is None:
        return HandleParts()
    try:
        fields = []
        for name in ("slabindex", "offset", "valid"):
            bit_off, _, size = path_offset(union, name)
            fields.append((bit_off, size))
        return HandleParts(*fields)
    except PmdbError:
        return HandleParts()


class StackDepot:
    """Looks up handles; each failure is a CorruptionError with a one-line reason."""

    def __init__(self, space: Any, lookup: Any, types: Any = None) -> None:
        self.space = space
        self.slabs = lookup("stack_slabs")
        self.index_addr = lookup("depot_index")
        self.parts = _handle_parts(types)
        record = types.find("struct stack_record") if types is not None else None
        self.off_size, self.off_handle, self.off_entries = 12, 16, 24
        if record is not None:
            try:
                self.off_size = path_offset(record, "size")[0] // 8
                self.off_handle = path_offset(record, "handle")[0] // 8
                self.off_entries = path_offset(record, "entries")[0] // 8
            except PmdbError:
                pass
        self._cache: dict[int, list[int]] = {}

    @property
    def available(self) -> bool:
        return self.slabs is not None

    def stack(self, handle: int) -> list[int]:
        """The return addresses recorded under handle, innermost first."""
        hit = self._cache.get(handle)
        if hit is None:
            hit = self._fetch(handle)
            self._cache[handle] = hit
        return hit

    def _fetch(self, handle: int) -> list[int]:
        if self.slabs is None:
            raise CorruptionError(handle, "the kernel has no stack depot (no stack_slabs symbol)")
        index, offset, valid = self.parts.split(handle)
        if not valid:
            raise CorruptionError(handle, f"stack depot handle {handle:#010x} is not marked valid")
        try:
            used = self.space.u32(self.index_addr) if self.index_addr is not None else None
            if used is not None and index > used:
                raise CorruptionError(handle, f"stack depot handle {handle:#010x} names pool {index}, "
                                              f"past the last one in use ({used})")
            pool = self.space.u64(self.slabs + 8 * index)
            if not pool:
                raise CorruptionError(handle, f"stack depot handle {handle:#010x}: pool {index} "
                                              f"was never allocated")
            record = pool + (offset << STACK_ALLOC_ALIGN)
            size = self.space.u32(record + self.off_size)
            own = self.space.u32(record + self.off_handle)
            mask = self.parts.mask     # the extra bits are the caller's, not the depot's
            if own & mask != handle & mask or not 0 < size <= MAX_ENTRIES:
                raise CorruptionError(record, f"stack depot handle {handle:#010x} points at {record:#x}, "
                                              f"which is not its record (handle {own:#x}, {size} frames)")
            raw = self.space.read(record + self.off_entries, 8 * size)
        except FaultError as err:
            raise CorruptionError(handle, f"stack depot handle {handle:#010x}: {err}") from None
        return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
