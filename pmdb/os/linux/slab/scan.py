"""Every slab of every cache, by one pass over the page array (vmemmap).

SLUB keeps no list of a cache's full slabs unless the cache stores user
tracks, so "every allocated object" needs the pages themselves: each head
page with PG_slab names its cache in ``slab_cache``. The array is read in
256 KiB pieces (4,096 struct pages each; a piece the dump left out is read
again 4 KiB at a time, and what is still missing is skipped), and the flags
are picked out of each piece by C-level slicing, not a Python step per page:
a 4 GB machine has a million pages. A slab's ``struct slab`` overlays its head
``struct page``, so the bytes read here are kept, and the slab is not read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pmdb.errors import FaultError

_CHUNK = 256 << 10
_PIECE = 4096


@dataclass
class SlabScan:
    """What the scan found: each cache's slabs, and each slab's head struct page bytes."""

    by_cache: dict[int, list[int]] = field(default_factory=dict)
    heads: dict[int, bytes] = field(default_factory=dict)


def scan_slab_pages(space: Any, vmemmap_base: int, max_pfn: int, lay: Any,
                    progress: Any = None) -> SlabScan:
    """The slabs of pfns 0 .. max_pfn by cache (``struct kmem_cache`` address); ``progress``
    (a pmdb.progress.Progress) counts struct pages."""
    stride, word = lay.page_size, space.ptr_size       # struct page's fields are unsigned longs
    out = SlabScan()
    end = vmemmap_base + max_pfn * stride
    if progress is not None:
        progress.start(f"finding the slabs among {max_pfn:,} pages", max_pfn)
    try:
        addr = vmemmap_base
        while addr < end:
            n = min(_CHUNK, end - addr) // stride * stride
            if n == 0:
                break
            try:
                _pick(out, space.read(addr, n), addr, lay, word)
            except FaultError:
                for at in range(addr, addr + n, _PIECE):
                    size = min(_PIECE, addr + n - at) // stride * stride
                    try:
                        _pick(out, space.read(at, size), at, lay, word)
                    except FaultError:
                        continue
            addr += n
            if progress is not None:
                progress.advance(n // stride)
    finally:
        if progress is not None:
            progress.finish()
    return out


def _pick(out: SlabScan, raw: bytes, base: int, lay: Any, word: int) -> None:
    """The slab head pages among the struct pages in raw (read at base)."""
    stride = lay.page_size
    words = stride // word
    view = memoryview(raw).cast("Q" if word == 8 else "I")
    flags = view[0::words].tolist()
    bit = 1 << lay.pg_slab
    hits = [i for i, f in enumerate(flags) if f & bit]
    if not hits:
        return
    heads = view[lay.page_compound_head // word::words].tolist()
    caches = view[lay.slab_cache // word::words].tolist()
    for i in hits:
        if heads[i] & 1:            # a tail page of a compound slab
            continue
        page = base + i * stride
        out.by_cache.setdefault(caches[i], []).append(page)
        out.heads[page] = raw[i * stride:(i + 1) * stride]
