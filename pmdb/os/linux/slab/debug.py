"""slub_debug metadata: red zones, poison, padding and the alloc/free tracks of an object.

The checks are the ones 6.1's ``check_object()`` and ``slab_pad_check()``
make (mm/slub.c), run over the slab's bytes as the dump holds them:

- with SLAB_RED_ZONE, the left red zone (``red_left_pad`` bytes before the
  object) and the right one (``object_size`` .. ``inuse``) hold 0xcc while the
  object is allocated and 0xbb while it is free;
- without red zones but with SLAB_POISON, that right gap is 0x5a padding;
- with SLAB_POISON a free object is 0x6b, its last byte 0xa5 (when the cache
  poisons objects at all: no constructor, not TYPESAFE_BY_RCU), and the bytes
  after the metadata up to the next slot are 0x5a, as is the slab's tail;
- the free pointer, when it lives outside the object, points into the slab.

6.1 does not check kmalloc slack (bytes past the requested size): that came in 6.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmdb.os.linux.slab.objects import SlabObjects, decode_free_pointer
from pmdb.os.linux.slab.slub import OBJECT_POISON, SLAB_KMALLOC, SLAB_POISON, KmemCache, Slab

RED_ACTIVE, RED_INACTIVE = 0xCC, 0xBB
POISON_INUSE, POISON_FREE, POISON_END = 0x5A, 0x6B, 0xA5


@dataclass(frozen=True)
class Finding:
    """One damaged area of one object (or of the slab's tail)."""

    cache: str
    obj: int                # object address; for slab padding, the slab's memory
    state: str              # "allocated", "free" or "slab"
    what: str               # "right red zone", "poison" ...
    start: int              # first damaged byte
    length: int             # damaged bytes from start to the last damaged one
    offset: int             # of start from the object
    slab_offset: int        # of start from the slab's memory (the kernel's @offset)
    expected: int
    found: bytes

    def line(self) -> str:
        if self.what == "free pointer":
            return (f"{self.cache}: {self.state} buffer {self.obj:x}: free pointer at +{self.offset:#x} "
                    f"({self.start:x}, @offset={self.slab_offset}) decodes to "
                    f"{int.from_bytes(self.found, 'big'):#x}, not an object of its slab")
        shown = " ".join(f"{b:02x}" for b in self.found[:16]) + (" ..." if len(self.found) > 16 else "")
        verb = ("buffer modified after being freed" if self.state == "free" and self.what == "poison"
                else f"{self.what} overwritten")
        return (f"{self.cache}: {self.state} buffer {self.obj:x}: {verb} at +{self.offset:#x} "
                f"({self.start:x}-{self.start + self.length - 1:x}, @offset={self.slab_offset}): "
                f"expected {self.expected:#04x}, found {shown}")


@dataclass(frozen=True)
class Track:
    """One SLAB_STORE_USER track: who allocated or freed an object, where and when."""

    kind: str               # "alloc" or "free"
    addr: int               # the caller
    handle: int             # stack depot handle, 0 when none
    cpu: int
    pid: int
    when: int               # jiffies


def has_orig_size(cache: KmemCache) -> bool:
    """kmalloc caches that store user tracks also keep the requested size (6.1)."""
    return cache.stores_user and bool(cache.flags & SLAB_KMALLOC)


def meta_end(cache: KmemCache) -> int:
    """Offset from the object past the tracks (and orig_size): where padding starts."""
    end = cache.info_end
    if cache.stores_user:
        end += 2 * cache.track.size
    if has_orig_size(cache):
        end += 4
    return end


def read_tracks(cache: KmemCache, obj: int, data: bytes, base: int) -> list[Track]:
    """The object's alloc and free tracks that were ever written (addr != 0)."""
    if not cache.stores_user:
        return []
    out = []
    lay = cache.track
    for i, kind in enumerate(("alloc", "free")):
        off = obj - base + cache.info_end + i * lay.size
        raw = data[off:off + lay.size]
        if len(raw) < lay.size:
            continue
        addr = _field(raw, lay.addr, 8)
        if addr:
            handle = _field(raw, lay.handle, 4) if lay.handle is not None else 0
            out.append(Track(kind, addr, handle, _field(raw, lay.cpu, 4, signed=True),
                             _field(raw, lay.pid, 4, signed=True), _field(raw, lay.when, 8)))
    return out


def _field(raw: bytes, off: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(raw[off:off + size], "little", signed=signed)


def orig_size(cache: KmemCache, obj: int, data: bytes, base: int) -> int | None:
    if not has_orig_size(cache):
        return None
    off = obj - base + cache.info_end + 2 * cache.track.size
    return int.from_bytes(data[off:off + 4], "little")


class _Checker:
    """Compares areas of one slab's bytes with the fill bytes SLUB put there."""

    def __init__(self, cache: KmemCache, slab: Slab, data: bytes) -> None:
        self.cache, self.slab, self.data = cache, slab, data
        self.found: list[Finding] = []

    def area(self, obj: int, state: str, what: str, start: int, length: int, fill: int) -> None:
        lo = start - self.slab.base
        seg = self.data[lo:lo + length]
        if length <= 0 or seg == bytes([fill]) * len(seg):
            return
        bad = [i for i, b in enumerate(seg) if b != fill]
        first, last = bad[0], bad[-1]
        self.found.append(Finding(self.cache.name, obj, state, what, start + first, last - first + 1,
                                  start + first - obj, lo + first, fill, bytes(seg[first:last + 1])))


def check_slab(objs: SlabObjects, data: bytes) -> list[Finding]:
    """Every damaged area of every object in the slab, and of the slab's tail padding."""
    cache, slab = objs.cache, objs.slab
    chk = _Checker(cache, slab, data)
    for obj in objs.objects():
        check_object(chk, obj, obj in objs.free)
    if cache.flags & SLAB_POISON:
        used = slab.objects * cache.size
        chk.area(slab.base, "slab", "slab padding", slab.base + used, cache.slab_bytes - used, POISON_INUSE)
    return chk.found


def check_object(chk: _Checker, obj: int, free: bool) -> None:
    cache = chk.cache
    state = "free" if free else "allocated"
    red = RED_INACTIVE if free else RED_ACTIVE
    end = obj + cache.object_size
    if cache.red_zone:
        chk.area(obj, state, "left red zone", obj - cache.red_left_pad, cache.red_left_pad, red)
        chk.area(obj, state, "right red zone", end, cache.inuse - cache.object_size, red)
    elif cache.flags & SLAB_POISON:
        chk.area(obj, state, "alignment padding", end, cache.inuse - cache.object_size, POISON_INUSE)
    if cache.flags & SLAB_POISON:
        if free and cache.flags & OBJECT_POISON:
            chk.area(obj, state, "poison", obj, cache.object_size - 1, POISON_FREE)
            chk.area(obj, state, "end poison", end - 1, 1, POISON_END)
        pad_end = cache.size - (cache.red_left_pad if cache.red_zone else 0)
        chk.area(obj, state, "object padding", obj + meta_end(cache), pad_end - meta_end(cache), POISON_INUSE)
    if cache.offset >= cache.inuse or free:
        _check_free_pointer(chk, obj, state)


def _check_free_pointer(chk: _Checker, obj: int, state: str) -> None:
    cache, slab = chk.cache, chk.slab
    where = obj + cache.offset
    lo = where - slab.base
    raw = chk.data[lo:lo + 8]
    if len(raw) < 8:
        return
    ptr = decode_free_pointer(cache, int.from_bytes(raw, "little"), where)
    if ptr == 0:
        return
    rel = ptr - slab.base - (cache.red_left_pad if cache.red_zone else 0)
    if 0 <= rel < slab.objects * cache.size and rel % cache.size == 0:
        return
    chk.found.append(Finding(cache.name, obj, state, "free pointer", where, 8, cache.offset, lo,
                             0, ptr.to_bytes(8, "big")))
