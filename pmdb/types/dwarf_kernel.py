"""A kernel's types from its debug vmlinux's DWARF, through a cached name index.

Opening reads only the ELF headers. The first type or variable query loads the name
index (dwarf_index: from pmdb's cache, else a scan of .debug_info shown as progress),
then every Type is built from the DIEs the query reaches, by the same lazy DwarfTypes
that reads user programs' DWARF.
"""

from __future__ import annotations

from collections.abc import Iterable

from elftools.dwarf.die import DIE

from pmdb.cache import Cache
from pmdb.errors import FormatError, PmdbError
from pmdb.progress import Progress
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf import _FOREIGN, DwarfTypes
from pmdb.types.dwarf_index import NameIndex, cached_index
from pmdb.types.dwarf_scan import ENUM, PLAIN, STRUCT, UNION, VARIABLE

_KIND_CODES = {"struct": STRUCT, "union": UNION, "enum": ENUM}
# a vmlinux index that lacks these was not built from a kernel (or from a damaged one)
REQUIRED = ((STRUCT, "task_struct"), (STRUCT, "list_head"))


class KernelDieIndex:
    """dwarf.DieIndex over a NameIndex, loaded on first use. A scan that fails is one
    FormatError; the index is empty after it, so BTF and the rest keep working."""

    def __init__(self, debug: DebugFile, cache: Cache | None, progress: Progress | None = None) -> None:
        self.debug = debug
        self._cache = cache
        self._progress = progress
        self._index: NameIndex | None = None
        self.from_cache = False
        self.problem = ""

    def die_at(self, offset: int) -> DIE:
        """The DIE at a .debug_info offset, parsing its unit's header only."""
        return self._die_in(self.index(), offset)

    def _die_in(self, index: NameIndex, offset: int) -> DIE:
        dwarf = self.debug.dwarf()
        try:
            return dwarf.get_CU_at(index.unit_of(offset)).get_DIE_from_refaddr(offset)
        except _FOREIGN as err:
            raise FormatError(f"bad DWARF at {offset:#x}: {err}") from None

    def index(self) -> NameIndex:
        if self._index is None:
            try:
                self._index, self.from_cache = self._load()
            except (PmdbError, *_FOREIGN) as err:
                self.problem = f"{self.debug.path}: DWARF not usable ({err})"
                self._index = NameIndex({}, [0], 0)
                raise FormatError(self.problem) from None
        return self._index

    def _load(self) -> tuple[NameIndex, bool]:
        return cached_index(self.debug, self._cache, self._die_in, REQUIRED, self._progress)

    # -- DieIndex ----------------------------------------------------------------------

    def type_die(self, name: str, kind: str | None) -> DIE | None:
        offset = self.index().offset(_KIND_CODES[kind] if kind else PLAIN, name)
        return self.die_at(offset) if offset is not None else None

    def variable_die(self, name: str) -> DIE | None:
        offset = self.index().offset(VARIABLE, name)
        return self.die_at(offset) if offset is not None else None

    def type_names(self) -> Iterable[str]:
        return self.index().type_names()

    def variable_names(self) -> Iterable[str]:
        return self.index().variable_names()


def kernel_dwarf_types(debug: DebugFile, cache: Cache | None,
                       progress: Progress | None = None) -> tuple[DwarfTypes, KernelDieIndex]:
    """A TypeSource over the vmlinux's DWARF (and its index, for figures and warnings)."""
    index = KernelDieIndex(debug, cache, progress)
    return DwarfTypes(index=index), index
