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

from pmdb.cache import Cache, content_key
from pmdb.errors import FormatError, PmdbError
from pmdb.progress import NoProgress, Progress
from pmdb.types.debugfile import DebugFile
from pmdb.types.dwarf_scan import KIND_NAMES, PLAIN, VARIABLE, Found, Sections, names, scan_unit, units

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
    sec = Sections(debug.sections[".debug_info"], debug.sections[".debug_abbrev"],
                   debug.sections.get(".debug_str", (0, 0)), little=debug.little)
    found: Found = {}
    tables: dict = {}
    offsets: list[int] = []
    base, size = sec.info
    dropped = base
    for unit in units(debug.mm, base, size, debug.little):
        offsets.append(unit.start - base)
        scan_unit(debug.mm, sec, unit, tables, found)
        if unit.end - dropped > _DROP_EVERY:
            done = _drop_pages(debug.mm, dropped, unit.end)
            progress.advance(done - dropped)
            dropped = done
    return NameIndex(names(debug.mm, found), offsets, size)


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
    stem = _stem(cache, debug) if cache is not None else None
    if cache is not None and stem is not None:
        found = cache.find(stem)
        if found is not None:
            try:
                index = _load(found.read_bytes())
                check(index, debug, die_at, required)
                return index, True
            except (OSError, PmdbError):
                debug.reset_dwarf()      # units parsed at the bad index's offsets are forgotten
                with contextlib.suppress(OSError):
                    found.unlink()       # damaged or stale: the file is the truth
    index = build_index(debug, progress)
    check(index, debug, die_at, required)
    if cache is not None and stem is not None:
        cache.store(stem, _dump(index))
    return index, False


def _stem(cache: Cache, debug: DebugFile) -> Path | None:
    try:
        key = content_key(debug.path)
    except OSError:
        return None
    label = debug.build_id()[:40] or "nobuildid"
    return cache.path("dwarf", f"index{FORMAT}-{label}-{key}")


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
