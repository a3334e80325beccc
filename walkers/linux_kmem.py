"""Walkers over SLUB: caches, slabs, allocated objects and free objects.

A cache is named by the walk's start address (its struct kmem_cache) or by a
name after the walker (``::walk kmem kmalloc-128``). Slabs come from a scan of
the page array, so full slabs of caches without slub_debug are included.
Damaged freelists end with one line on the error stream; the other slabs
are still walked.
"""

from __future__ import annotations

from collections.abc import Iterator

from pmdb.commands import Context, walker
from pmdb.errors import CommandError, PmdbError
from pmdb.os.linux.slab.audit import cache_slabs
from pmdb.os.linux.slab.slub import KmemCache, SlubModel, find_listed_cache, slub_model


def _model(ctx: Context) -> SlubModel:
    try:
        return slub_model(ctx.target)
    except PmdbError as err:
        raise CommandError(str(err)) from None


def _caches(ctx: Context, model: SlubModel, start: int | None, needed: bool) -> list[KmemCache]:
    word = start if start is not None else (ctx.argv[0] if ctx.argv else None)
    if word is None:
        if needed:
            raise CommandError("name a cache: ::walk kmem kmalloc-128, or cache-address::walk kmem")
        return model.caches()
    cache = find_listed_cache(model, word)
    if cache is None:
        shown = f"{word:#x}" if isinstance(word, int) else repr(word)
        raise CommandError(f"no slab cache {shown} (::kmastat lists them)")
    return [cache]


def _report(ctx: Context, problems: list[str]) -> None:
    for p in problems:
        ctx.out.error(p)


@walker("kmem_cache", synopsis="every SLUB cache (struct kmem_cache), in slab_caches order",
        type_name="struct kmem_cache", example="::walk kmem_cache | ::print name size")
def walk_kmem_cache(ctx: Context, start: int | None) -> Iterator[int]:
    """Each cache on the kernel's slab_caches list; a loop in the list ends the walk with
    one line."""
    model = _model(ctx)
    for c in model.caches():
        yield c.address
    _report(ctx, model.cache_errors)


@walker("slab", synopsis="the slabs (struct slab) of a cache, or of every cache",
        type_name="struct slab", example="::walk slab kmalloc-128")
def walk_slab(ctx: Context, start: int | None) -> Iterator[int]:
    """Each slab of the cache given (start address or name), found by a scan of the page
    array; without a cache, every slab of every cache."""
    model = _model(ctx)
    for cache in _caches(ctx, model, start, needed=False):
        yield from model.all_slab_pages(cache)


def _objects(ctx: Context, start: int | None, free: bool) -> Iterator[int]:
    model = _model(ctx)
    problems: list[str] = []
    for cache in _caches(ctx, model, start, needed=not free):
        for view in cache_slabs(model, cache, problems):
            if free:
                yield from (o for o in view.objects.objects() if o in view.objects.free)
            else:
                yield from view.objects.allocated()
    _report(ctx, problems)


@walker("kmem", synopsis="the allocated objects of a cache", example="::walk kmem task_struct")
def walk_kmem(ctx: Context, start: int | None) -> Iterator[int]:
    """Every allocated object of the cache (start address or name): each slab's objects less
    those on its freelist and, for a CPU's active slab, on that CPU's freelist. Object
    addresses are what kmalloc returned (past any left red zone)."""
    yield from _objects(ctx, start, free=False)


@walker("freemem", synopsis="the free objects of a cache, or of every cache",
        example="::walk freemem kmalloc-128")
def walk_freemem(ctx: Context, start: int | None) -> Iterator[int]:
    """Every free object (on a slab's freelist or a CPU's freelist) of the cache given, or
    of every cache."""
    yield from _objects(ctx, start, free=True)
