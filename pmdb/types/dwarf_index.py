"""The name index of a big DWARF file: built once by dwarf_scan, kept in pmdb's cache.

An index maps each type name (``struct task_struct``, ``pid_t``) and variable name to the
offset of the DIE that defines it, plus the sorted offsets of the units, so one DIE can
be parsed without walking the units before it. For a distribution vmlinux the scan
takes ~10-15 s; the cached index loads in milliseconds. It is keyed by the file's
content (build-id, size, a hash of its ends), written atomically, and checked when written
and when loaded: its offsets must lie in .debug_info and its sample DIEs must carry the
names it gives them, or it is rebuilt.
"""

from __future__ import annotations

import bisect
import contextlib
import marshal
import mmap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from elftools.dwarf.die import DIE

from pmdb.cache import Cache, content_key, sealed, unsealed
from pmdb.errors import FormatError, PmdbError
from pmdb.progress import NoProgress, Progress
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf_scan import (
    KIND_NAMES,
    PLAIN,
    VARIABLE,
    Found,
    Sections,
    better,
    named,
    scan_unit,
    units,
)

FORMAT = 1                  # bump when the layout of a cached index changes
_DROP_EVERY = 32 << 20      # scanned bytes after which their pages are dropped from RSS


@dataclass
class NameIndex:
    """kind (dwarf_scan.STRUCT...) -> name -> DIE offset; unit offsets, sorted."""

    names: dict[int, dict[str, int]]
    units: list[int]
    info_size: int

    def offset(self, kind: int, name: str) -> int | None:
        return self.names.get(kind, {}).get(name)

    def unit_of(self, offset: int) -> int:
        """The offset of the unit holding the DIE at ``offset``."""
        i = bisect.bisect_right(self.units, offset)
        if i == 0:
            raise FormatError(f"DIE offset {offset:#x} is before the first unit")
        return self.units[i - 1]

    def type_names(self) -> Iterable[str]:
        yield from self.names.get(PLAIN, {})
        for kind, spelled in KIND_NAMES.items():
            for name in self.names.get(kind, {}):
                yield f"{spelled} {name}"

    def variable_names(self) -> Iterable[str]:
        return self.names.get(VARIABLE, {}).keys()


def build_index(debug: DebugFile, progress: Progress | None = None) -> NameIndex:
    """Scan every unit of the file's .debug_info (FormatError for a damaged one)."""
    if not debug.has_dwarf():
        raise FormatError("no .debug_info: not a debug file")
    progress = progress or NoProgress()
    progress.start(f"indexing the DWARF of {debug.path} (once: the index is cached)",
                   debug.sections[".debug_info"][1])
    try:
        return _scan(debug, progress)
    finally:
        progress.finish()


def _scan(debug: DebugFile, progress: Progress) -> NameIndex:
    partial = PartialIndex(debug)
    return partial.finish(progress)


# a lookup that misses scans this many more units before it looks again (a vmlinux has
# ~2,400; the names most asked for are declared in its first few: jiffies in the 10th)
_BATCH_UNITS = 8


class PartialIndex:
    """The name index, grown unit by unit as far as lookups need it.

    A kernel's common types and globals are defined or declared in its first units (the
    headers every file includes), so a lookup usually ends after a few units instead of
    the whole file's scan. What it returns is what the whole index would: names are merged
    in unit order by the same rule (dwarf_scan.better), and an early hit is returned only
    when ``accept`` says no later DIE could replace it; anything else scans on, to the end
    if need be. ``finish`` completes it into a NameIndex (for the cache and name lists)."""

    def __init__(self, debug: DebugFile, resume: tuple[dict[int, dict[str, int]], dict[tuple[int, str], int],
                                                       list[int], int] | None = None) -> None:
        """``resume``: (names, flags, units, where the next unit starts) of an earlier scan of
        this file (load_partial's, checked), to go on from."""
        self._mm = debug.mm
        self._sec = Sections(debug.sections[".debug_info"], debug.sections[".debug_abbrev"],
                             debug.sections.get(".debug_str", (0, 0)), little=debug.little)
        base, self.info_size = self._sec.info
        self.names: dict[int, dict[str, int]] = {}
        self._flags: dict[tuple[int, str], int] = {}
        self.units: list[int] = []
        self.next_unit = 0                  # the offset of the unit the scan reads next
        if resume is not None:
            self.names, self._flags, self.units, self.next_unit = resume
        self.resumed_at = len(self.units)   # units scanned before this process
        self._units = units(debug.mm, base, self.info_size, debug.little, self.next_unit)
        self._tables: dict = {}
        self._dropped = base + self.next_unit
        self.complete = self.next_unit >= self.info_size

    def lookup(self, kind: int, name: str, accept: Callable[[int, int], bool]) -> int | None:
        """The DIE offset the whole index would give (kind, name): an early hit when
        ``accept(offset, flags)`` holds, else after scanning on; None if no unit names it."""
        while True:
            hit = self.names.get(kind, {}).get(name)
            if hit is not None and (self.complete or accept(hit, self._flags[(kind, name)])):
                return hit
            if self.complete:
                return None
            self._scan(_BATCH_UNITS, None)

    def state(self) -> bytes:
        """What a later process resumes from (load_partial), as cache bytes."""
        return sealed(_PARTIAL_KIND, marshal.dumps((self.info_size, self.units, self.next_unit, self.names,
                                                    list(self._flags.items()))))

    def scan_ahead(self, count: int) -> None:
        """Scan the next ``count`` units whatever lookups will ask (a head start)."""
        if not self.complete:
            self._scan(count, None)

    def unit_of(self, offset: int) -> int:
        i = bisect.bisect_right(self.units, offset)
        if i == 0:
            raise FormatError(f"DIE offset {offset:#x} is before the first unit")
        return self.units[i - 1]

    def finish(self, progress: Progress | None = None) -> NameIndex:
        """Scan the rest (FormatError for a damaged unit) and give the whole index."""
        while not self.complete:
            self._scan(64, progress)
        return NameIndex(self.names, self.units, self.info_size)

    def _scan(self, count: int, progress: Progress | None) -> None:
        found: Found = {}
        base = self._sec.info[0]
        for _ in range(count):
            unit = next(self._units, None)
            if unit is None:
                self.complete = True
                break
            self.units.append(unit.start - base)
            scan_unit(self._mm, self._sec, unit, self._tables, found)
            self.next_unit = unit.end - base
            if unit.end - self._dropped > _DROP_EVERY:
                done = _drop_pages(self._mm, self._dropped, unit.end)
                if progress is not None:
                    progress.advance(done - self._dropped)
                self._dropped = done
        for (kind, name), (offset, flags) in named(self._mm, found).items():
            old = self._flags.get((kind, name))
            if old is None or better((self.names[kind][name], old), flags):
                self.names.setdefault(kind, {})[name] = offset
                self._flags[(kind, name)] = flags


def _drop_pages(mm: mmap.mmap, start: int, stop: int) -> int:
    """Tell the kernel the scanned pages are not needed again, so peak RSS stays small
    (a mapped file's resident pages count in it). Returns where the next drop starts."""
    page = mmap.PAGESIZE
    lo, hi = start // page * page, stop // page * page
    with contextlib.suppress(OSError, ValueError, AttributeError):
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return hi


DieAt = Callable[[NameIndex, int], DIE]      # the DIE at an offset, its unit found by the index


def check(index: NameIndex, debug: DebugFile, die_at: DieAt,
          required: Iterable[tuple[int, str]] = ()) -> None:
    """FormatError unless the index fits this file: every offset inside .debug_info, the
    required names present, and sample DIEs (the required ones and the one furthest into
    the section) parsed at their offsets carrying those names. Few are parsed: each costs
    pyelftools a unit's abbrev table (~10-50 ms for a vmlinux unit)."""
    size = debug.sections[".debug_info"][1]
    if index.info_size != size or not index.units or index.units != sorted(index.units) \
            or index.units[-1] >= size:
        raise FormatError("the index does not match this .debug_info")
    samples: list[tuple[int, str, int]] = []
    for kind, name in required:
        off = index.offset(kind, name)
        if off is None:
            raise FormatError(f"no {KIND_NAMES.get(kind, '')} {name} in the DWARF".replace("  ", " "))
        samples.append((kind, name, off))
    last: tuple[int, str, int] | None = None
    for kind, table in index.names.items():
        if not isinstance(table, dict):
            raise FormatError("malformed index")
        for name, off in table.items():
            if not isinstance(name, str) or not isinstance(off, int) or not 0 <= off < size:
                raise FormatError(f"index offset of {name} lies outside .debug_info")
            if last is None or off > last[2]:
                last = (kind, name, off)
    for _kind, name, off in samples + ([last] if last else []):
        die = die_at(index, off)
        got = die.attributes.get("DW_AT_name")
        text = got.value.decode("utf-8", "replace") if got is not None and isinstance(got.value, bytes) else ""
        if text != name:
            raise FormatError(f"the DIE at {off:#x} is not {name}")


def cached_index(debug: DebugFile, cache: Cache | None, die_at: DieAt,
                 required: Iterable[tuple[int, str]] = (),
                 progress: Progress | None = None) -> tuple[NameIndex, bool]:
    """(the index, whether it came from the cache): a cached one that checks, else a new
    scan, written to the cache once it checks."""
    required = list(required)
    found = load_cached(debug, cache, die_at, required)
    if found is not None:
        return found, True
    index = build_index(debug, progress)
    check(index, debug, die_at, required)
    store_index(debug, cache, index)
    return index, False


def load_cached(debug: DebugFile, cache: Cache | None, die_at: DieAt,
                required: Iterable[tuple[int, str]] = ()) -> NameIndex | None:
    """The cached index of this file if there is one and it checks; a damaged or stale
    entry is deleted (the file is the truth)."""
    stem = _stem(cache, debug) if cache is not None else None
    if cache is None or stem is None:
        return None
    found = cache.find(stem)
    if found is None:
        return None
    try:
        index = _load(found.read_bytes())
        check(index, debug, die_at, list(required))
        return index
    except (OSError, PmdbError):
        debug.reset_dwarf()      # units parsed at the bad index's offsets are forgotten
        with contextlib.suppress(OSError):
            found.unlink()
        return None


def store_index(debug: DebugFile, cache: Cache | None, index: NameIndex) -> None:
    """Write a checked index to the cache (atomically: Cache.store)."""
    stem = _stem(cache, debug) if cache is not None else None
    if cache is not None and stem is not None:
        cache.store(stem, _dump(index))


def in_cache(debug: DebugFile, cache: Cache | None) -> bool:
    """Whether an earlier process left this file's index, or a scan cut short, in the cache."""
    stems = [_stem(cache, debug, what) for what in ("index", "partial")] if cache is not None else []
    return cache is not None and any(stem is not None and cache.find(stem) is not None for stem in stems)


def _stem(cache: Cache, debug: DebugFile, what: str = "index") -> Path | None:
    try:
        key = content_key(debug.path)
    except OSError:
        return None
    label = debug.build_id()[:40] or "nobuildid"
    return cache.path("dwarf", f"{what}{FORMAT}-{label}-{key}")


# -- a scan cut short, kept to resume -----------------------------------------------------
#
# Most opens never need the whole index: the names they ask for are settled in the first
# units (jiffies in the 10th of 2,400), or, for a kernel without BTF (686-pae), in the first
# few hundred. What such a scan found is kept (sealed, keyed like the index) and the next
# process starts from it instead of from the first unit: the same answers, since a resumed
# scan merges later units by the same rule as an unbroken one.

_PARTIAL_KIND = b"pmdbdp01"


def store_partial(debug: DebugFile, cache: Cache | None, partial: PartialIndex) -> None:
    """Keep a scan cut short when it went further than the one it resumed (best effort)."""
    stem = _stem(cache, debug, "partial") if cache is not None else None
    if cache is None or stem is None or partial.complete or len(partial.units) <= partial.resumed_at:
        return
    cache.discard(stem)             # the scan it resumed from (entries are named by size)
    cache.store(stem, partial.state())


def load_partial(debug: DebugFile, cache: Cache | None, die_at: DieAt,
                 required: Iterable[tuple[int, str]] = ()) -> PartialIndex | None:
    """A scan of this file cut short by an earlier process, when its entry is whole and
    checks (its offsets in .debug_info; its furthest DIE and those of the ``required``
    names it holds named as it says; its next unit where its last one ends); a bad entry
    is removed."""
    stem = _stem(cache, debug, "partial") if cache is not None else None
    found = cache.find(stem) if cache is not None and stem is not None else None
    if found is None:
        return None
    try:
        index, flag_of, next_unit = _partial_state(found.read_bytes())
        names = index.names
        check(index, debug, die_at, [(kind, name) for kind, name in required
                                     if isinstance(names.get(kind), dict) and name in names[kind]])
        base = debug.sections[".debug_info"][0]
        last = next(units(debug.mm, base, index.info_size, debug.little, index.units[-1]))
        if last.end - base != next_unit:
            raise FormatError("its next unit is not where its last one ends")
        return PartialIndex(debug, (names, flag_of, index.units, next_unit))
    except (OSError, PmdbError, ValueError, TypeError, EOFError, StopIteration):
        debug.reset_dwarf()
        with contextlib.suppress(OSError):
            found.unlink()
        return None


def handed_partial(debug: DebugFile, state: bytes) -> PartialIndex | None:
    """The scan a forked copy of this process made of this very file (PartialIndex.state,
    through a pipe, not a file anyone else writes): checked for shape, not against DIEs.
    Its units are new to the cache, so ``close`` keeps them."""
    try:
        index, flag_of, next_unit = _partial_state(state)
    except (PmdbError, ValueError, TypeError, EOFError):
        return None
    if index.info_size != debug.sections[".debug_info"][1]:
        return None
    partial = PartialIndex(debug, (index.names, flag_of, index.units, next_unit))
    partial.resumed_at = 0
    return partial


def _partial_state(data: bytes) -> tuple[NameIndex, dict[tuple[int, str], int], int]:
    """(names and units, flags, where the next unit starts) of PartialIndex.state's bytes;
    FormatError when they are damaged or not of that shape."""
    payload = unsealed(_PARTIAL_KIND, data)
    if payload is None:
        raise FormatError("damaged entry")
    size, unit_offsets, next_unit, names, flags = marshal.loads(payload)
    if not (isinstance(next_unit, int) and isinstance(unit_offsets, list) and unit_offsets
            and isinstance(unit_offsets[-1], int) and unit_offsets[-1] < next_unit < size
            and isinstance(flags, list) and isinstance(names, dict)):
        raise FormatError("malformed entry")
    flag_of = {(kind, name): int(bits) for (kind, name), bits in flags}
    if any(name not in names.get(kind, {}) for kind, name in flag_of):
        raise FormatError("flags of names it does not hold")
    return NameIndex(names, unit_offsets, size), flag_of, next_unit


def _dump(index: NameIndex) -> bytes:
    return marshal.dumps((FORMAT, index.info_size, index.units, index.names))


def _load(data: bytes) -> NameIndex:
    """An index from its cached bytes; FormatError for anything malformed."""
    try:
        fmt, size, offsets, names = marshal.loads(data)
    except (EOFError, ValueError, TypeError) as err:
        raise FormatError(f"unreadable index ({err})") from None
    if fmt != FORMAT or not isinstance(size, int) or not isinstance(offsets, list) \
            or not isinstance(names, dict) or not all(isinstance(o, int) for o in offsets):
        raise FormatError("malformed index")
    return NameIndex(names, offsets, size)
