"""Searching a dump's memory for a word: mdb's ::kgrep and crash's search.

Two ways over the same RAM. ``find_word`` scans the dump's own physical ranges once
(pages the dump left out are not there to search) and reports physical addresses;
``find_word_mapped`` scans every page the kernel's page tables map, in virtual order,
so a page seen through several mappings (the direct map, the kernel image's alias, a
vmalloc'ed stack) is reported at each, as crash's ``search -k`` does. Both read a MiB at
a time and compare it as an array of words with numpy (10-20x ``bytes.find``, which
checks every byte offset and slows down on the 0xff and 0x00 bytes every kernel pointer
and page of zeros is full of), report progress, and stop at ^C like any command.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

import numpy as np

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace
from pmdb.progress import NoProgress, Progress

CHUNK = 1 << 20


class _Word:
    """The word searched for, as numpy compares it: its type (size and byte order) and value."""

    def __init__(self, value: int, size: int, byteorder: str) -> None:
        self.size = size
        self.dtype = np.dtype(f"{'>' if byteorder == 'big' else '<'}u{size}")
        self.value = self.dtype.type(value & ((1 << 8 * size) - 1))

    def hits(self, data: bytes, at: int) -> Iterator[int]:
        """Addresses of the aligned words of data (read at ``at``) equal to the value."""
        skip = -at % self.size
        count = max(len(data) - skip, 0) // self.size
        if not count:
            return
        equal = np.frombuffer(data, dtype=self.dtype, count=count, offset=skip) == self.value
        if equal.any():
            for i in np.flatnonzero(equal).tolist():
                yield at + skip + i * self.size


def _scan(phys: AddressSpace, start: int, end: int, word: _Word, progress: Progress) -> Iterator[int]:
    """Physical addresses in [start, end) where the aligned word equals the value."""
    at = start
    while at < end:
        n = min(CHUNK, end - at)
        try:
            data = phys.read(at, n)
        except FaultError as err:
            data, n = _after_fault(phys, at, n, err)
        yield from word.hits(data, at)
        at += n
        progress.advance(n)


def _after_fault(phys: AddressSpace, at: int, n: int, err: FaultError) -> tuple[bytes, int]:
    """What to search of [at, at+n) when reading it all faulted, and how far that goes: the
    bytes before the page the error names (one read, not a retry per page), nothing of the
    page at ``at`` when that is the one missing, else that page if it reads."""
    page = 4096 - at % 4096
    if at <= err.address < at + page:
        return b"", page                    # the page at `at` is the one missing
    prefix = err.address - at if at < err.address < at + n else 0
    for length in (prefix, page) if prefix else (page,):
        try:
            return phys.read(at, length), length
        except FaultError:
            continue
    return b"", page


def find_word(phys: AddressSpace, ranges: list[tuple[int, int]], value: int, size: int,
              byteorder: str = "little", progress: Progress | None = None) -> Iterator[int]:
    """Physical addresses of every ``size``-aligned word equal to value, in address order."""
    word = _Word(value, size, byteorder)
    progress = progress or NoProgress()
    total = sum(e - s for s, e in ranges)
    progress.start(f"searching {total >> 20} MiB of memory for {value:#x}", total)
    try:
        for start, end in ranges:
            yield from _scan(phys, start, end, word, progress)
    finally:
        progress.finish()


def merged(mappings: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(virtual, physical, size) mappings joined where both addresses continue."""
    runs: list[tuple[int, int, int]] = []
    for vaddr, paddr, length in mappings:
        if runs and runs[-1][0] + runs[-1][2] == vaddr and runs[-1][1] + runs[-1][2] == paddr:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + length)
        else:
            runs.append((vaddr, paddr, length))
    return runs


def held_parts(start: int, end: int, held: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The parts of physical [start, end) inside the sorted, disjoint ranges ``held``."""
    i = max(bisect.bisect_right(held, (start, 1 << 64)) - 1, 0)
    while i < len(held) and held[i][0] < end:
        lo, hi = max(start, held[i][0]), min(end, held[i][1])
        if lo < hi:
            yield lo, hi
        i += 1


def overlaps(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The sorted, disjoint ranges that two or more of ``ranges`` (start, end) cover."""
    out: list[tuple[int, int]] = []
    reach = None                    # the furthest end of the ranges met so far
    for start, end in sorted(ranges):
        if reach is not None and start < reach:
            lo, hi = start, min(end, reach)
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        reach = end if reach is None else max(reach, end)
    return out


class SharedPages:
    """The hits in physical memory that several mappings show (a vmalloc'd stack is also
    in the direct map, the kernel image in its own alias): searched once, at the first
    mapping that shows it, then answered from the hits kept, so a compressed dump does
    not decompress those pages again. Past ``KEEP`` hits (a common value) nothing more is
    kept and memory not yet searched is searched at each mapping."""

    KEEP = 1 << 20

    def __init__(self, shared: list[tuple[int, int]]) -> None:
        self.shared = shared
        self.searched: list[tuple[int, int]] = []    # sorted, disjoint: shared memory searched
        self.hits: list[int] = []                    # sorted: the hits in it
        self.keeping = True

    def split(self, lo: int, hi: int) -> Iterator[tuple[int, int, bool]]:
        """[lo, hi) as pieces (start, end, whether already searched), in order."""
        at = lo
        i = max(bisect.bisect_right(self.searched, (lo, 1 << 64)) - 1, 0)
        while at < hi:
            while i < len(self.searched) and self.searched[i][1] <= at:
                i += 1
            if i == len(self.searched) or self.searched[i][0] >= hi:
                yield at, hi, False
                return
            s, e = self.searched[i]
            if s > at:
                yield at, s, False
                at = s
            yield at, min(e, hi), True
            at = min(e, hi)

    def hits_in(self, lo: int, hi: int) -> list[int]:
        return self.hits[bisect.bisect_left(self.hits, lo):bisect.bisect_left(self.hits, hi)]

    def note(self, hits: Iterator[int]) -> Iterator[int]:
        """hits, passed on; those in shared memory kept."""
        for hit in hits:
            if self.keeping and self._shared(hit):
                bisect.insort(self.hits, hit)
                if len(self.hits) > self.KEEP:
                    self.keeping = False
                    self.searched.clear()
                    self.hits.clear()
            yield hit

    def done(self, lo: int, hi: int) -> None:
        """[lo, hi) was searched whole: its shared memory need not be again."""
        if not self.keeping:
            return
        for a, b in held_parts(lo, hi, self.shared):
            j = bisect.bisect_left(self.searched, (a, b))
            self.searched.insert(j, (a, b))
            self._merge_around(j)

    def _shared(self, addr: int) -> bool:
        i = bisect.bisect_right(self.shared, (addr, 1 << 64)) - 1
        return i >= 0 and self.shared[i][0] <= addr < self.shared[i][1]

    def _merge_around(self, j: int) -> None:
        runs = self.searched
        lo = max(j - 1, 0)
        while lo + 1 < len(runs) and lo <= j + 1:
            if runs[lo][1] >= runs[lo + 1][0]:
                runs[lo] = (runs[lo][0], max(runs[lo][1], runs[lo + 1][1]))
                del runs[lo + 1]
            else:
                lo += 1


def find_word_mapped(phys: AddressSpace, mappings: Iterable[tuple[int, int, int]], value: int, size: int,
                     byteorder: str = "little", progress: Progress | None = None,
                     held: list[tuple[int, int]] | None = None) -> Iterator[int]:
    """Virtual addresses of every aligned word equal to value in the mapped pages given
    (virtual, physical, size), in their order. ``held``, the physical ranges the dump holds
    (sorted), lets the search pass over what a filtered dump left out without reading it
    (on a -d 31 dump most of the direct map). Memory that several mappings show is read
    once (SharedPages)."""
    word = _Word(value, size, byteorder)
    runs = merged(mappings)
    shared = SharedPages(overlaps((p, p + n) for _, p, n in runs))
    progress = progress or NoProgress()
    total = sum(n for _, _, n in runs)
    progress.start(f"searching {total >> 20} MiB of mapped memory for {value:#x}", total)
    try:
        for vaddr, paddr, length in runs:
            parts = held_parts(paddr, paddr + length, held) if held is not None else [(paddr, paddr + length)]
            done = paddr
            for lo, hi in parts:
                progress.advance(lo - done)
                for a, b, before in shared.split(lo, hi):
                    if before:
                        progress.advance(b - a)
                        hits: Iterable[int] = shared.hits_in(a, b)
                    else:
                        hits = shared.note(_scan(phys, a, b, word, progress))
                    yield from (vaddr + hit - paddr for hit in hits)
                    if not before:
                        shared.done(a, b)
                done = hi
            progress.advance(paddr + length - done)
    finally:
        progress.finish()
