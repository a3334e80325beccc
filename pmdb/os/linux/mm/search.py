"""Searching a dump's memory for a word: mdb's ::kgrep and crash's search.

Two ways over the same RAM. ``find_word`` scans the dump's own physical ranges once
(pages the dump left out are not there to search) and reports physical addresses;
``find_word_mapped`` scans every page the kernel's page tables map, in virtual order,
so a page seen through several mappings (the direct map, the kernel image's alias, a
vmalloc'ed stack) is reported at each, as crash's ``search -k`` does. Both read a MiB at
a time and use ``bytes.find`` (C speed, not a Python loop per word), report progress,
and stop at ^C like any command.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace
from pmdb.progress import NoProgress, Progress

CHUNK = 1 << 20


def _needle(value: int, size: int, byteorder: str) -> bytes:
    return (value & ((1 << 8 * size) - 1)).to_bytes(size, "big" if byteorder == "big" else "little")


def _scan(phys: AddressSpace, start: int, end: int, needle: bytes, progress: Progress) -> Iterator[int]:
    """Physical addresses in [start, end) where the aligned word equals needle."""
    size = len(needle)
    at = start
    while at < end:
        n = min(CHUNK, end - at)
        try:
            data = phys.read(at, n)
        except FaultError as err:
            data, n = _after_fault(phys, at, n, err)
        pos = data.find(needle)
        while pos >= 0:
            if (at + pos) % size == 0:
                yield at + pos
            pos = data.find(needle, pos + 1)
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
    needle = _needle(value, size, byteorder)
    progress = progress or NoProgress()
    total = sum(e - s for s, e in ranges)
    progress.start(f"searching {total >> 20} MiB of memory for {value:#x}", total)
    try:
        for start, end in ranges:
            yield from _scan(phys, start, end, needle, progress)
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


def find_word_mapped(phys: AddressSpace, mappings: Iterable[tuple[int, int, int]], value: int, size: int,
                     byteorder: str = "little", progress: Progress | None = None,
                     held: list[tuple[int, int]] | None = None) -> Iterator[int]:
    """Virtual addresses of every aligned word equal to value in the mapped pages given
    (virtual, physical, size), in their order. ``held``, the physical ranges the dump holds
    (sorted), lets the search pass over what a filtered dump left out without reading it
    (on a -d 31 dump most of the direct map)."""
    needle = _needle(value, size, byteorder)
    runs = merged(mappings)
    progress = progress or NoProgress()
    total = sum(n for _, _, n in runs)
    progress.start(f"searching {total >> 20} MiB of mapped memory for {value:#x}", total)
    try:
        for vaddr, paddr, length in runs:
            parts = held_parts(paddr, paddr + length, held) if held is not None else [(paddr, paddr + length)]
            done = paddr
            for lo, hi in parts:
                progress.advance(lo - done)
                yield from (vaddr + hit - paddr for hit in _scan(phys, lo, hi, needle, progress))
                done = hi
            progress.advance(paddr + length - done)
    finally:
        progress.finish()
