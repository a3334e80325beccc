"""A kernel's types from its debug vmlinux's DWARF, through a cached name index.

Opening reads only the ELF headers. The first type or variable query loads the name
index from pmdb's cache, or else scans .debug_info only as far as the query needs (the
headers every file includes put a kernel's common types and globals in its first units:
``jiffies`` is settled in the 10th of 2,400); the whole scan, shown as progress and then
cached, happens only for a name no early unit settles. Every Type is built from the DIEs
the query reaches, by the same lazy DwarfTypes that reads user programs' DWARF.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from elftools.dwarf.die import DIE

from pmdb.cache import Cache
from pmdb.errors import FormatError, PmdbError
from pmdb.progress import NoProgress, Progress
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf import _FOREIGN, DwarfTypes
from pmdb.types.dwarf_index import (
    NameIndex,
    PartialIndex,
    check,
    handed_partial,
    load_cached,
    load_partial,
    store_index,
    store_partial,
)
from pmdb.types.dwarf_scan import DECLARATION, ENUM, EXTERNAL, PLAIN, STRUCT, UNION, VARIABLE
from pmdb.types.head_start import HeadStart

_KIND_CODES = {"struct": STRUCT, "union": UNION, "enum": ENUM}
# a vmlinux index that lacks these was not built from a kernel (or from a damaged one)
REQUIRED = ((STRUCT, "task_struct"), (STRUCT, "list_head"))


class KernelDieIndex:
    """dwarf.DieIndex over a vmlinux's names: the cached whole index when there is one,
    else a PartialIndex that scans only as many units as lookups need (the whole scan, then
    cached, only for a name no early unit settles, or for lists of names). A scan that fails
    is one FormatError; the index is empty after it, so BTF and the rest keep working."""

    def __init__(self, debug: DebugFile, cache: Cache | None, progress: Progress | None = None,
                 head_start: HeadStart | None = None) -> None:
        """``head_start``: head_start.start_head_start's, scanning the first units meanwhile."""
        self.debug = debug
        self._cache = cache
        self._progress = progress
        self._head_start = head_start
        self.head_start_units = 0       # units the head start scanned, once taken
        self._index: NameIndex | None = None
        self._partial: PartialIndex | None = None
        self._looked_in_cache = False
        self.from_cache = False
        self.problem = ""

    def die_at(self, offset: int) -> DIE:
        """The DIE at a .debug_info offset, parsing its unit's header only."""
        source = self._index or self._partial
        if source is None:
            source = self.index()
        return self._die_in(source, offset)

    def _die_in(self, index: NameIndex | PartialIndex, offset: int) -> DIE:
        dwarf = self.debug.dwarf()
        try:
            return dwarf.get_CU_at(index.unit_of(offset)).get_DIE_from_refaddr(offset)
        except _FOREIGN as err:
            raise FormatError(f"bad DWARF at {offset:#x}: {err}") from None

    def index(self) -> NameIndex:
        """The whole index: cached, or the scan finished (shown as progress) and cached."""
        if self._index is None:
            try:
                self._index = self._cached() or self._finish()
            except (PmdbError, *_FOREIGN) as err:
                self._fail(err)
        assert self._index is not None
        return self._index

    def _cached(self) -> NameIndex | None:
        if self._looked_in_cache:
            return None
        self._looked_in_cache = True
        found = load_cached(self.debug, self._cache, self._die_in, REQUIRED)
        self.from_cache = found is not None
        return found

    def _finish(self) -> NameIndex:
        partial = self._partial or self._handed() or PartialIndex(self.debug)
        progress = self._progress or NoProgress()
        progress.start(f"indexing the DWARF of {self.debug.path} (once: the index is cached)",
                       partial.info_size)
        try:
            index = partial.finish(progress)
        finally:
            progress.finish()
        check(index, self.debug, self._die_in, REQUIRED)
        store_index(self.debug, self._cache, index)
        return index

    def _fail(self, err: Exception) -> None:
        self.problem = f"{self.debug.path}: DWARF not usable ({err})"
        self._index, self._partial = NameIndex({}, [0], 0), None
        raise FormatError(self.problem) from None

    def _lookup(self, kind: int, name: str, accept: Callable[[int, int], bool]) -> int | None:
        if self._index is None and self._partial is None:
            try:
                self._index = self._cached()
            except (PmdbError, *_FOREIGN) as err:
                self._fail(err)
        if self._index is not None:
            return self._index.offset(kind, name)
        try:
            if self._partial is None:
                self._partial = (self._handed() or load_partial(self.debug, self._cache, self._die_in, REQUIRED)
                                 or PartialIndex(self.debug))
            found = self._partial.lookup(kind, name, accept)
            if self._partial.complete:           # a miss scanned it all: keep and cache it
                self._index = self._finish()
            return found
        except (PmdbError, *_FOREIGN) as err:
            self._fail(err)
            return None

    def _handed(self) -> PartialIndex | None:
        """The head start's scan, once (waiting for it if need be); None without one."""
        head, self._head_start = self._head_start, None
        state = head.dwarf_state() if head is not None else None
        partial = handed_partial(self.debug, state) if state is not None else None
        self.head_start_units = len(partial.units) if partial is not None else 0
        return partial

    def close(self) -> None:
        """Keep a scan cut short for the next process (store_partial: best effort); stop a
        head start nothing asked for."""
        if self._head_start is not None:
            self._head_start.cancel()
            self._head_start = None
        if self._index is None and self._partial is not None:
            store_partial(self.debug, self._cache, self._partial)

    # -- DieIndex ----------------------------------------------------------------------

    def type_die(self, name: str, kind: str | None) -> DIE | None:
        # a type's first definition is the whole index's answer (later ones never replace it)
        offset = self._lookup(_KIND_CODES[kind] if kind else PLAIN, name,
                              lambda _off, flags: not flags & DECLARATION)
        return self.die_at(offset) if offset is not None else None

    def variable_die(self, name: str) -> DIE | None:
        offset = self._lookup(VARIABLE, name, self._settled_variable)
        return self.die_at(offset) if offset is not None else None

    def _settled_variable(self, offset: int, flags: int) -> bool:
        """Whether an early DIE of a global already has the type the whole index would give:
        an external definition is final; an external declaration has the definition's type
        (C makes them agree) unless it is an array whose size it leaves out."""
        if not flags & EXTERNAL:
            return False
        return not flags & DECLARATION or _sized(self.die_at(offset))

    def type_names(self) -> Iterable[str]:
        return self.index().type_names()

    def variable_names(self) -> Iterable[str]:
        return self.index().variable_names()


_QUALIFIERS = ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_atomic_type")


def _sized(die: DIE) -> bool:
    """A variable DIE's type is complete: not an array with an unknown bound."""
    t = die
    for _ in range(16):
        if "DW_AT_type" not in t.attributes:
            return t is not die
        t = t.get_DIE_from_attribute("DW_AT_type")
        if t.tag == "DW_TAG_array_type":
            return all("DW_AT_upper_bound" in sub.attributes or "DW_AT_count" in sub.attributes
                       for sub in t.iter_children() if sub.tag == "DW_TAG_subrange_type")
        if t.tag not in _QUALIFIERS:
            return True
    return False


def kernel_dwarf_types(debug: DebugFile, cache: Cache | None, progress: Progress | None = None,
                       head_start: HeadStart | None = None) -> tuple[DwarfTypes, KernelDieIndex]:
    """A TypeSource over the vmlinux's DWARF (and its index, for figures and warnings)."""
    index = KernelDieIndex(debug, cache, progress, head_start)
    return DwarfTypes(index=index), index
