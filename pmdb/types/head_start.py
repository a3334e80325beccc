"""A head start on a named debug vmlinux, worked out by a forked child (pmdb.forked).

The first open of a dump with its vmlinux decodes the dump's kallsyms (~100 ms) before it
can find the BTF, then scans the BTF's records (~40 ms), and the first global asked for
(``::print jiffies``) scans the DWARF's first units (~30 ms). The last two need nothing
from the dump when the vmlinux is at hand: the vmlinux carries the same ``.BTF`` (its
build-id is the dump's), and its DWARF is its own. So while this process decodes kallsyms,
a child indexes the vmlinux's ``.BTF`` and scans its first DWARF units, and hands both back.

What is taken from it is exact: the BTF index is used only for bytes equal to the ones the
child indexed (the dump's BTF is still what is read, and compared whole), and the DWARF
scan is the very one this process would make (dwarf_index.handed_partial). A child that
failed or was not started costs nothing but the work done here instead.
"""

from __future__ import annotations

import contextlib
import marshal
from array import array

from pmdb import forked
from pmdb.cache import Cache
from pmdb.errors import PmdbError
from pmdb.types.btf import BtfTypes
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf_index import PartialIndex, in_cache

# units of DWARF scanned: jiffies is settled in the 10th, lookups scan 8 at a time
DWARF_UNITS = 16


class HeadStart:
    """The child's work on one vmlinux, taken once, by whichever step needs it first."""

    def __init__(self, debug: DebugFile, child: forked.Child) -> None:
        self.debug = debug
        self._child: forked.Child | None = child
        self._btf: tuple[bytes, bytes] | None = None
        self._dwarf: bytes | None = None

    def _take(self) -> None:
        child, self._child = self._child, None
        data = child.result() if child is not None else None
        if data is None:
            return
        with contextlib.suppress(ValueError, EOFError, TypeError):
            btf, dwarf = marshal.loads(data)
            if isinstance(btf, tuple) and len(btf) == 2 and all(isinstance(b, bytes) for b in btf):
                self._btf = btf
            if isinstance(dwarf, bytes):
                self._dwarf = dwarf

    def btf_index(self, data: bytes | bytearray | memoryview) -> tuple[array, array] | None:
        """BtfTypes' index of ``data`` (the dump's BTF) when those are the very bytes of the
        vmlinux's ``.BTF`` the child indexed; None otherwise."""
        self._take()
        where = self.debug.sections.get(".BTF")
        if self._btf is None or where is None:
            return None
        start, size = where
        # the one place find can match in is where .BTF starts: equal bytes, compared in
        # place (0.2 ms; a slice of the mapping to compare would copy 4 MB first)
        if len(data) != size or self.debug.mm.find(data, start, start + size) != start:
            return None
        offs, names = array("I"), array("I")
        offs.frombytes(self._btf[0])
        names.frombytes(self._btf[1])
        return offs, names

    def dwarf_state(self) -> bytes | None:
        """PartialIndex.state of the vmlinux's first DWARF_UNITS units."""
        self._take()
        return self._dwarf

    def cancel(self) -> None:
        """Stop the child if nothing took its work (the target is closing)."""
        child, self._child = self._child, None
        if child is not None:
            child.cancel()


def start_head_start(debug: DebugFile, cache: Cache | None) -> HeadStart | None:
    """Start the child on a vmlinux this cache has not seen scanned (an earlier process's
    DWARF scan means the dump's BTF is most likely cached too); None when none started."""
    if not debug.has_dwarf() or in_cache(debug, cache):
        return None

    def work() -> bytes:
        return marshal.dumps((_btf_index(debug), _dwarf_state(debug)))

    child = forked.start(work)
    return HeadStart(debug, child) if child is not None else None


def _btf_index(debug: DebugFile) -> tuple[bytes, bytes] | None:
    where = debug.sections.get(".BTF")
    if where is None:
        return None
    start, size = where
    try:
        offs, names = BtfTypes(debug.mm[start:start + size]).index_arrays()
    except PmdbError:
        return None
    return offs.tobytes(), names.tobytes()


def _dwarf_state(debug: DebugFile) -> bytes | None:
    try:
        partial = PartialIndex(debug)
        partial.scan_ahead(DWARF_UNITS)
    except PmdbError:
        return None
    return partial.state()
