"""Slab forensics on Linux dumps: mdb's kmem dcmds over SLUB, and crash's ``kmem``.

::kmastat (per-cache statistics), ::kmem_verify (red zones, poison, freelists),
::kmalog (alloc/free transactions from slub_debug tracks), ::bufctl_audit
(one object's audit), and crash's ``kmem -s``, ``kmem -S`` and ``kmem addr``.
The model is pmdb.os.linux.slab.slub; the slab part of ::whatis is
pmdb.os.linux.slab.describe_slab_address.
"""

from __future__ import annotations

from typing import Any

from pmdb.commands import Context, dcmd
from pmdb.commands.args import number
from pmdb.errors import CommandError, PmdbError
from pmdb.os.linux.slab.audit import (
    CacheStats,
    cache_stats,
    kernel_clock,
    stack_of,
    transactions,
    verify_cache,
)
from pmdb.os.linux.slab.slub import KmemCache, SlubModel, find_listed_cache, slub_model
from pmdb.os.linux.slab.text import audit_object, code_text
from pmdb.output import Cell, Column, Dec, Hex, Symbol


def _model(ctx: Context) -> SlubModel:
    try:
        return slub_model(ctx.target)
    except PmdbError as err:
        raise CommandError(str(err)) from None


def _cache(model: SlubModel, word: Any) -> KmemCache:
    """A cache named by name, or by the address of its struct kmem_cache (a listed one: any
    other address could be read as a plausible-looking cache)."""
    cache = find_listed_cache(model, word)
    if cache is None:
        shown = f"{word:#x}" if isinstance(word, int) else repr(word)
        raise CommandError(f"no slab cache {shown} (::kmastat lists them)")
    return cache


def _report(ctx: Context, lines: list[str]) -> None:
    for line in lines:
        ctx.out.error(line)


def _count(word: Any) -> int:
    """A count as mdb reads it: hex by default, 0t for decimal."""
    value = word if isinstance(word, int) else number(str(word))
    if value is None:
        raise CommandError(f"bad count {word!r}")
    return value


def _size(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


# -- ::kmastat / kmem -s ------------------------------------------------------------------

def _stats_rows(ctx: Context, model: SlubModel, caches: list[KmemCache]) -> tuple[list[CacheStats], list[str]]:
    stats, problems = [], list(model.cache_errors)
    for c in caches:
        st = cache_stats(model, c)
        stats.append(st)
        problems += st.problems
    return stats, problems


KMASTAT_COLUMNS = (Column("cache", "CACHE"), Column("name", "NAME"), Column("objsize", "OBJSIZE", ">"),
                   Column("inuse", "INUSE", ">"), Column("total", "TOTAL", ">"), Column("slabs", "SLABS", ">"),
                   Column("ssize", "SSIZE", ">"), Column("memory", "MEMORY", ">"))
VERIFY_COLUMNS = (Column("cache", "CACHE"), Column("name", "NAME"), Column("slabs", "SLABS", ">"),
                  Column("integrity", "INTEGRITY"))


@dcmd("kmastat", addr="optional", synopsis="slab cache statistics: objects in use and total, slabs, memory",
      example="::kmastat -v", opts={"v": "verbose"}, usage="[-v] [cache]")
def kmastat(ctx: Context, *args: Any, verbose: bool = False) -> None:
    """One row per SLUB cache, in the order of the kernel's slab_caches list: the cache's
    struct kmem_cache, name, object size, objects in use and in total, slabs, slab size and
    the memory its slabs take. The counts are the kernel's (each node's total_objects less
    the free objects of the per-CPU and partial slabs), as crash's ``kmem -s`` computes
    them. -v adds a row per NUMA node. Piped, hands on each cache's address."""
    model = _model(ctx)
    caches = [_cache(model, ctx.addr if ctx.addr is not None else args[0])] if ctx.addr is not None or args \
        else model.caches()
    stats, problems = _stats_rows(ctx, model, caches)
    if ctx.piped:
        for st in stats:
            ctx.emit(st.cache.address, ctx.target.types.find("struct kmem_cache"))
        _report(ctx, problems)
        return
    rows: list[list[Cell]] = []
    for st in stats:
        c = st.cache
        rows.append([Hex(c.address), c.name, c.object_size, st.allocated, st.total, st.slabs,
                     _size(c.slab_bytes), _size(st.memory)])
        if verbose:
            for nid, slabs, partial, total in st.per_node:
                rows.append(["", f"  node {nid}", "", "", total, slabs, f"{partial} partial", ""])
    ctx.out.table(KMASTAT_COLUMNS, rows)
    _report(ctx, problems)


# -- ::kmem_verify ----------------------------------------------------------------------

@dcmd("kmem_verify", addr="optional", synopsis="check every slab: red zones, poison, padding, freelists",
      example="::kmem_verify kmalloc-128", usage="[cache]")
def kmem_verify(ctx: Context, *args: Any) -> None:
    """Without a cache, a line per cache saying whether it is clean, then every damaged
    object. With a cache (by name, or as addr::kmem_verify), only that cache's details. Each
    damaged area is one line: the object, whether it was allocated or free, which area
    (left/right red zone, poison - mdb's "buffer modified after being freed" - padding, free
    pointer), its offset from the object and from the slab (the kernel's @offset), and the
    expected and found bytes. Caches without slub_debug get freelist checks only."""
    model = _model(ctx)
    single = ctx.addr is not None or bool(args)
    caches = [_cache(model, ctx.addr if ctx.addr is not None else args[0])] if single else model.caches()
    rows, details = [], list(model.cache_errors)
    if caches and not single:
        model.all_slab_pages(caches[0])   # the page scan (its own bar) before the caches' bar
    for cache in ctx.progressing(f"::kmem_verify: verifying {len(caches)} slab caches", caches):
        res = verify_cache(model, cache)
        details += [f.line() for f in res.findings] + res.problems
        bad = len({f.obj for f in res.findings})
        if bad:
            state = f"{bad} corrupt buffer{'s' if bad > 1 else ''}"
        elif res.problems:
            state = f"{len(res.problems)} slab problem{'s' if len(res.problems) > 1 else ''}"
        else:
            state = "clean" if cache.debug else "clean (freelists only: no slub_debug)"
        rows.append([Hex(cache.address), cache.name, res.slabs, state])
    if not single:
        ctx.out.table(VERIFY_COLUMNS, rows)
    elif not details:
        ctx.out.table(VERIFY_COLUMNS, rows, text=[f"{caches[0].name}: {rows[0][3]} ({rows[0][2]} slabs)"])
    for line in details:
        ctx.out.line(line)


# -- ::kmalog -------------------------------------------------------------------------------

@dcmd("kmalog", addr="none", synopsis="alloc and free transactions from slub_debug tracks, newest first",
      example="::kmalog -c kmalloc-128", opts={"c:": "cache", "n:": "count"}, usage="[-c cache] [-n count]")
def kmalog(ctx: Context, cache: Any = None, count: Any = None) -> None:
    """Every allocation and free that SLUB's tracks (slub_debug=U) record, newest first,
    as ``T-seconds  object  cache  alloc|free  cpu pid`` and the stack from the stack
    depot. Each object keeps only its last alloc and last free. -c limits it to one cache,
    -n to the newest count transactions."""
    model = _model(ctx)
    caches = [_cache(model, cache)] if cache is not None else model.caches()
    tracked = [c for c in caches if c.stores_user]
    if not tracked:
        what = f"cache {caches[0].name}" if cache is not None else "any cache"
        raise CommandError(f"the dump has no tracks for {what} (the kernel was not booted with slub_debug=U)")
    problems: list[str] = list(model.cache_errors)
    txs = transactions(model, tracked, problems)
    if count is not None:
        txs = txs[:_count(count)]
    now, hz = kernel_clock(model)
    symbols = ctx.target.symbols
    rows: list[list[Cell]] = []
    lines: list[str] = []
    for tx in ctx.progressing("::kmalog: every transaction", txs):
        t = tx.track
        age = (now - t.when) & (1 << 64) - 1
        age = 0 if age >= 1 << 63 else age
        stack, why = stack_of(model, t)
        calls = [code_text(symbols, pc) for pc in stack]
        rows.append([Dec(age / hz, 9), Hex(tx.obj), tx.cache.name, t.kind, Symbol(t.addr, code_text(symbols, t.addr)),
                     t.cpu, t.pid, [Symbol(pc, c) for pc, c in zip(stack, calls, strict=True)], why or None])
        lines.append(f"T-{age / hz:.9f}  {tx.obj:016x}  {tx.cache.name:<20} {t.kind:<5}  "
                     f"{code_text(symbols, t.addr)}  cpu={t.cpu} pid={t.pid}")
        lines += [f"{'':19}{c}" for c in calls] + ([f"{'':19}({why})"] if why else [])
        if ctx.piped:
            ctx.emit(tx.obj)
    ctx.out.table(KMALOG_COLUMNS, rows, text=lines)
    _report(ctx, problems)


KMALOG_COLUMNS = (Column("age_seconds"), Column("object"), Column("cache"), Column("kind"), Column("caller"),
                  Column("cpu"), Column("pid"), Column("stack"), Column("stack_note"))


# -- ::bufctl_audit ---------------------------------------------------------------------

@dcmd("bufctl_audit", addr="required", synopsis="one slab object's audit: cache, slab, state and tracks",
      example="ffff88d082d28380::bufctl_audit", usage="")
def bufctl_audit(ctx: Context, *_args: Any) -> None:
    """The object holding addr: its cache, slab and slot, allocated or free, the size the
    caller asked for (kmalloc caches with tracks), and its last alloc and free tracks with
    their stacks (who, when, on which CPU, by which pid). Caches without slub_debug=U have no
    tracks, and the audit says so. ``addr$<bufctl_audit`` runs this too."""
    model = _model(ctx)
    addr = ctx.require_addr()
    for line in audit_object(model, ctx.target.symbols, addr):
        ctx.out.line(line)


# -- crash's kmem ---------------------------------------------------------------------------

_CRASH_HEAD = "CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME"
_SLAB_HEAD = "  SLAB              MEMORY            NODE  TOTAL  ALLOCATED  FREE"
# crash's kmem -s columns, under _CRASH_HEAD
CRASH_CACHE_COLUMNS = (Column("cache", "CACHE", width=16), Column("objsize", "OBJSIZE", ">", 7, "  "),
                       Column("allocated", "ALLOCATED", ">", 9, "  "), Column("total", "TOTAL", ">", 8, "  "),
                       Column("slabs", "SLABS", ">", 5, "  "), Column("ssize", "SSIZE", ">", 5, "  "),
                       Column("name", "NAME", gap="  "))


def _crash_cache_row(st: CacheStats) -> list[Cell]:
    c = st.cache
    return [Hex(c.address), c.object_size, st.allocated, st.total, st.slabs, _size(c.slab_bytes), c.name]


def _crash_caches(ctx: Context, stats: list[CacheStats]) -> None:
    """crash's cache lines under its header."""
    ctx.out.table(CRASH_CACHE_COLUMNS, [_crash_cache_row(st) for st in stats], header=_CRASH_HEAD, fit=False)


def _slab_line(model: SlubModel, cache: KmemCache, page: int) -> str:
    from pmdb.os.linux.slab.objects import slab_objects
    try:
        slab = model.read_slab(page)
        objs = slab_objects(model, cache, slab)
    except PmdbError as err:
        return f"  {page:016x}  ({err})"
    free = len(objs.free)
    return (f"  {page:016x}  {slab.base:016x}{slab.node:>6}{slab.objects:>7}"
            f"{slab.objects - free:>11}{free:>6}")


def _object_lines(model: SlubModel, cache: KmemCache, page: int, only: int | None = None) -> list[str]:
    """crash's FREE / [ALLOCATED] list of one slab (object addresses, as crash's
    ``set redzone off`` prints them)."""
    from pmdb.os.linux.slab.objects import slab_objects
    slab = model.read_slab(page)
    objs = slab_objects(model, cache, slab)
    out = ["  FREE / [ALLOCATED]"]
    for obj in objs.objects():
        if only is not None and obj != only:
            continue
        out.append(f"   {obj:x}  " if obj in objs.free else f"  [{obj:x}]")
    return out + [f"  {p}" for p in objs.problems]


def _kmem_slabs(ctx: Context, model: SlubModel, cache: KmemCache) -> None:
    """``kmem -S cache``: per-CPU slabs and each node's partial and full slabs."""
    out = ctx.out
    for cpu in model.cpu_slabs(cache):
        out.line(f"CPU {cpu.cpu} KMEM_CACHE_CPU:\n  {cpu.address:x}\nCPU {cpu.cpu} SLAB:")
        if cpu.slab:
            out.line(_SLAB_HEAD)
            out.line(_slab_line(model, cache, cpu.slab))
            for line in _object_lines(model, cache, cpu.slab):
                out.line(line)
        else:
            out.line("  (empty)")
        out.line(f"CPU {cpu.cpu} PARTIAL:")
        partial = list(model.cpu_partial_slabs(cpu))
        _slab_block(ctx, model, cache, partial)
    out.line("KMEM_CACHE_NODE   NODE  SLABS  PARTIAL  PER-CPU")
    cpu_pages = {c.slab for c in model.cpu_slabs(cache) if c.slab}
    for nid, node in cache.nodes:
        nr_partial, nr_slabs, _ = model.node_counts(node)
        out.line(f"{node:<16x}  {nid:>4}  {nr_slabs:>5}  {nr_partial:>7}  {len(cpu_pages):>7}")
        partial = list(model.node_list(node, "partial"))
        out.line(f"NODE {nid} PARTIAL:")
        _slab_block(ctx, model, cache, partial)
        if cache.stores_user:
            full = list(model.node_list(node, "full"))
            out.line(f"NODE {nid} FULL:")
        else:
            listed = set(partial) | cpu_pages
            full = [p for p in model.all_slab_pages(cache) if p not in listed]
            out.line(f"NODE {nid} FULL (found by a page scan: SLUB lists full slabs only with slub_debug=U):")
        _slab_block(ctx, model, cache, full)


def _slab_block(ctx: Context, model: SlubModel, cache: KmemCache, pages: list[int]) -> None:
    if not pages:
        ctx.out.line("  (empty)")
        return
    ctx.out.line(_SLAB_HEAD)
    for page in pages:
        ctx.out.line(_slab_line(model, cache, page))


def _kmem_address(ctx: Context, model: SlubModel, addr: int, whole_slab: bool) -> None:
    """``kmem addr`` / ``kmem -S addr``: the cache, the slab, and the object (or every object)."""
    hit = model.slab_of(addr)
    if hit is None:
        raise CommandError(f"{addr:x} is not in a slab")
    slab, cache = hit
    _crash_caches(ctx, [cache_stats(model, cache)])
    ctx.out.line(_SLAB_HEAD)
    ctx.out.line(_slab_line(model, cache, slab.page))
    index = (addr - slab.base) // cache.size
    only = None if whole_slab else cache.object_at(slab.base, index)
    for line in _object_lines(model, cache, slab.page, only):
        ctx.out.line(line)


@dcmd("kmem", addr="optional", synopsis="crash's kmem: -i usage, -V counters, -v vmalloc, -p pages, -s/-S slabs",
      example="kmem -S kmalloc-128",
      opts={"s": "summary", "S": "slabs", "i": "info", "V": "counters", "v": "vmalloc", "p": "pages"},
      usage="-i | -V | -v [addr] | -p [addr] | -s | -S [cache|addr] | addr")
def kmem(ctx: Context, *args: Any, summary: bool = False, slabs: bool = False, info: bool = False,
         counters: bool = False, vmalloc: bool = False, pages: bool = False) -> None:
    """crash's spellings: ``kmem -i`` is crash's memory usage summary (PAGES TOTAL
    PERCENTAGE: total, free, used, shared, buffers, cached, slab, hugetlb, swap, commit);
    ``kmem -V`` the kernel's vm_zone_stat, vm_node_stat and summed vm_event_states;
    ``kmem -v [addr]`` the vmalloc areas (VMAP_AREA VM_STRUCT ADDRESS RANGE SIZE);
    ``kmem -p [addr]`` struct pages (PAGE PHYSICAL MAPPING INDEX CNT FLAGS; addr a struct
    page, a kernel virtual or a physical address). ``kmem -s`` prints every cache as crash
    does (CACHE OBJSIZE ALLOCATED TOTAL SLABS SSIZE NAME; ::kmastat is mdb's form);
    ``kmem -S cache`` adds the cache's per-CPU slabs and each node's partial and full slabs;
    ``kmem -S addr`` lists every object of the slab holding addr as FREE or [ALLOCATED];
    ``kmem addr`` names the cache, slab and object holding addr. Objects are shown at the
    address kmalloc returned."""
    words = [ctx.addr] if ctx.addr is not None else list(args)
    chosen = [f for f, on in (("-i", info), ("-V", counters), ("-v", vmalloc), ("-p", pages), ("-s", summary),
                              ("-S", slabs)) if on]
    if len(chosen) > 1:
        raise CommandError(f"kmem: {' and '.join(chosen)} cannot be used together")
    if info or counters or vmalloc or pages:     # crash's page and vmalloc views, not slabs
        from .linux_memory import kmem_counters, kmem_info, kmem_pages, kmem_vmalloc
    if info or counters:
        if words:
            raise CommandError(f"kmem {chosen[0]} takes no argument")
        (kmem_info if info else kmem_counters)(ctx)
        return
    if vmalloc or pages:
        (kmem_vmalloc if vmalloc else kmem_pages)(ctx, words)
        return
    model = _model(ctx)
    if summary or (not slabs and not words):
        caches = [_cache(model, w) for w in words] or model.caches()
        stats, problems = _stats_rows(ctx, model, caches)
        _crash_caches(ctx, stats)
        _report(ctx, problems)
        return
    for word in words or [c.address for c in model.caches()]:
        cache = _cache_or_none(model, word)
        if cache is None:
            _kmem_address(ctx, model, _address(word), whole_slab=slabs)
            continue
        _crash_caches(ctx, [cache_stats(model, cache)])
        if slabs:
            try:
                _kmem_slabs(ctx, model, cache)
            except PmdbError as err:
                ctx.out.error(f"{cache.name}: {err}")


def _cache_or_none(model: SlubModel, word: Any) -> KmemCache | None:
    try:
        return _cache(model, word)
    except CommandError:
        return None


def _address(word: Any) -> int:
    value = word if isinstance(word, int) else number(str(word))
    if value is None:
        raise CommandError(f"no slab cache or address {word!r}")
    return value
