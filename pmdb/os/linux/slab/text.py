"""Slab objects in words: ::whatis lines, ::bufctl_audit's audit, alloc/free tracks.

The slab model (slub.py and the modules beside it) produces data and never
imports this; the kernel facade's ``describe_address`` and the slab dcmds do.

Code addresses are written as the kernel's SLUB reports write them
(``name+0x21/0xf5 [module]``) so a report in the console log and pmdb's
audit can be read side by side.
"""

from __future__ import annotations

from typing import Any

from pmdb.errors import PmdbError
from pmdb.os.linux.slab.audit import SlabView, kernel_clock, object_at, requested_size, stack_of
from pmdb.os.linux.slab.debug import Track, read_tracks
from pmdb.os.linux.slab.slub import KmemCache, SlubModel, slub_model


def code_text(symbols: Any, pc: int) -> str:
    """``name+0xoff/0xsize [module]``, or the bare hex address."""
    hit = symbols.resolve(pc) if symbols is not None else None
    if hit is None:
        return f"{pc:#x}"
    sym, off = hit
    size = f"/{sym.size:#x}" if sym.size else ""
    mod = f" [{sym.module}]" if sym.module else ""
    return f"{sym.name}+{off:#x}{size}{mod}"


def age_text(model: SlubModel, when: int) -> str:
    now, hz = kernel_clock(model)
    age = (now - when) & (1 << 64) - 1
    if age >= 1 << 63:      # stamped after the last jiffies update read: call it now
        age = 0
    return f"T-{age / hz:.3f}s (age={age} jiffies)"


def track_lines(model: SlubModel, symbols: Any, track: Track, indent: str = "  ") -> list[str]:
    """A track's header and its stack, one frame a line."""
    verb = "allocated" if track.kind == "alloc" else "freed"
    out = [f"{indent}{verb} in {code_text(symbols, track.addr)} {age_text(model, track.when)} "
           f"cpu={track.cpu} pid={track.pid}"]
    stack, why = stack_of(model, track)
    out += [f"{indent}    {code_text(symbols, pc)}" for pc in stack]
    if why:
        out.append(f"{indent}    ({why})")
    return out


def object_state(view: SlabView, obj: int) -> str:
    if obj in view.objects.free:
        return "free"
    return "allocated"


def describe_slab(model: SlubModel, addr: int, symbols: Any) -> list[str] | None:
    """What ::whatis says of a slab address: cache, object start and offset, state, tracks."""
    found = object_at(model, addr)
    if found is None:
        return None
    view, cache, obj = found
    slab = view.slab
    where = f"slab {slab.page:x} (memory {slab.base:x}) of cache {cache.name} ({cache.address:x})"
    if obj < 0:
        return [f"{addr:x} is in the unused tail of {where}"]
    off = addr - obj
    if off < 0:
        part = f"in the left red zone of object {obj:x}, {-off:#x} bytes before it"
    elif off < cache.object_size:
        part = f"{obj:x}+{off:#x}" if off else f"the start of object {obj:x}"
    else:
        part = f"in the metadata of object {obj:x}, +{off:#x} (object size {cache.object_size})"
    state = object_state(view, obj)
    article = "an" if state[:1] in "aeiou" else "a"
    lines = [f"{addr:x} is {part}, {article} {state} {cache.name} object "
             f"(size {cache.object_size}) in {where}"]
    lines += [f"{p}" for p in view.objects.problems]
    if not cache.stores_user:
        return lines
    lines += audit_tracks(model, symbols, view, cache, obj)
    return lines


def audit_tracks(model: SlubModel, symbols: Any, view: SlabView, cache: KmemCache, obj: int) -> list[str]:
    tracks = read_tracks(cache, obj, view.data, view.slab.base) if view.data else []
    if not tracks:
        return ["  no alloc or free track recorded for this object"]
    out: list[str] = []
    for t in tracks:
        out += track_lines(model, symbols, t)
    return out


def audit_object(model: SlubModel, symbols: Any, addr: int) -> list[str]:
    """::bufctl_audit: everything known about the object holding addr."""
    found = object_at(model, addr)
    if found is None:
        return [f"{addr:x} is not in a slab"]
    view, cache, obj = found
    slab = view.slab
    if obj < 0:
        return [f"{addr:x} is in the unused tail of slab {slab.page:x} ({cache.name})"]
    index = (obj - slab.base) // cache.size
    lines = [f"object {obj:x} of cache {cache.name} ({cache.address:x}): {object_state(view, obj)}",
             f"  slab {slab.page:x}, memory {slab.base:x}, slot {index} at {cache.slot_start(slab.base, index):x}, "
             f"slab offset {obj - slab.base:#x}",
             f"  object size {cache.object_size}, slot size {cache.size}, free pointer at +{cache.offset:#x}, "
             f"flags {cache.flag_names()}"]
    req = requested_size(view, cache, obj)
    if req is not None:
        lines.append(f"  requested size {req}")
    lines += [f"  {p}" for p in view.objects.problems]
    if not cache.stores_user:
        lines.append(f"  the dump has no tracks for cache {cache.name} (it was not booted with "
                     f"slub_debug=U for it)")
        return lines
    return lines + audit_tracks(model, symbols, view, cache, obj)

def describe_slab_address(target: Any, addr: int) -> list[str] | None:
    """::whatis lines for an address in slab memory; None when it is not in a slab."""
    try:
        model = slub_model(target)
    except PmdbError:
        return None
    return describe_slab(model, addr, target.symbols)
