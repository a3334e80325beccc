"""Searching all of a dump's memory for a word: mdb's ::kgrep and crash's search.

RAM is scanned once, in the dump's own physical ranges (pages the dump left out are
not there to search), a MiB at a time with ``bytes.find`` (C speed, not a Python loop
per word); each hit at a word-aligned offset is reported at its physical address, which
the caller turns into the direct-map address. Cost grows with the dump's RAM, so the
scan reports progress and stops at ^C like any command.
"""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.errors import FaultError
from pmdb.memory.space import AddressSpace
from pmdb.progress import NoProgress, Progress

CHUNK = 1 << 20


def find_word(phys: AddressSpace, ranges: list[tuple[int, int]], value: int, size: int,
              byteorder: str = "little", progress: Progress | None = None) -> Iterator[int]:
    """Physical addresses of every ``size``-aligned word equal to value, in address order."""
    needle = (value & ((1 << 8 * size) - 1)).to_bytes(size, "big" if byteorder == "big" else "little")
    progress = progress or NoProgress()
    progress.start(f"searching {sum(e - s for s, e in ranges) >> 20} MiB of memory for {value:#x}",
                   sum(e - s for s, e in ranges))
    try:
        for start, end in ranges:
            at = start
            while at < end:
                n = min(CHUNK, end - at)
                try:
                    data = phys.read(at, n)
                except FaultError:
                    at += n
                    progress.advance(n)
                    continue
                pos = data.find(needle)
                while pos >= 0:
                    if (at + pos) % size == 0:
                        yield at + pos
                    pos = data.find(needle, pos + 1)
                at += n
                progress.advance(n)
    finally:
        progress.finish()
