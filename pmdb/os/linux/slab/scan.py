"""Every slab of every cache, by one pass over the page array (vmemmap).

SLUB keeps no list of a cache's full slabs unless the cache stores user
tracks, so "every allocated object" needs the pages themselves: each head
page with PG_slab names its cache in ``slab_cache``. The array is read in
4 KiB pieces (64 pages each); pieces the dump left out are skipped.
"""

from __future__ import annotations

from typing import Any

from pmdb.errors import FaultError

_CHUNK = 4096


def scan_slab_pages(space: Any, vmemmap_base: int, max_pfn: int, lay: Any) -> dict[int, list[int]]:
    """{struct kmem_cache address: [struct slab addresses]} over pfns 0 .. max_pfn."""
    stride, word = lay.page_size, space.ptr_size       # struct page's fields are unsigned longs
    words = stride // word
    flag_bit = 1 << lay.pg_slab
    head_word, cache_word = lay.page_compound_head // word, lay.slab_cache // word
    out: dict[int, list[int]] = {}
    end = vmemmap_base + max_pfn * stride
    addr = vmemmap_base
    while addr < end:
        n = min(_CHUNK, end - addr) // stride * stride
        try:
            chunk = memoryview(space.read(addr, n)).cast("Q" if word == 8 else "I")
        except FaultError:
            addr += _CHUNK
            continue
        for i in range(0, len(chunk), words):
            if chunk[i] & flag_bit and not chunk[i + head_word] & 1:
                out.setdefault(chunk[i + cache_word], []).append(addr + i * word)
        addr += _CHUNK
    return out
