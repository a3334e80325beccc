"""Finding the kernel's BTF, and its modules' split BTF, in a dump's memory.

vmlinux BTF is the image's ``.BTF`` section, between ``__start_BTF`` and
``__stop_BTF``. A module's BTF is not reachable from ``struct module`` after
the module's init (``do_init_module`` clears ``btf_data``), so it is found the
way the kernel itself keeps it: the ``btf_modules`` list of ``struct
btf_module``, each pointing at a ``struct btf`` whose ``data`` is the raw blob.
Those structs' layouts come from the vmlinux BTF itself, not from constants.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pmdb.cache import Cache, sealed_parts, unsealed
from pmdb.errors import CorruptionError, FormatError, PmdbError, quote
from pmdb.lookup_memo import LookupMemo
from pmdb.memory.space import AddressSpace, stored_digest
from pmdb.types.btf import BtfTypes
from pmdb.types.model import Type

if TYPE_CHECKING:      # a debug vmlinux's: imported with it (pyelftools), not by every open
    from pmdb.types.head_start import HeadStart

_MAX_MODULES = 4096     # far above any real system; ends a walk through garbage
_MAX_BTF = 64 << 20     # a module blob larger than this is a wild size field


# what pmdb's kernel model cannot work without: a BTF lacking them is not worth keeping
REQUIRED_STRUCTS = ("task_struct", "list_head")


def vmlinux_btf(space: AddressSpace, lookup: Callable[[str], int | None],
                cache: Cache | None = None, build_id: str = "", head_start: HeadStart | None = None) -> BtfTypes:
    """The kernel's own BTF, read from ``space`` (a kernel virtual space).

    Reading it means decompressing ~1000 pages of a compressed dump (~0.1 s); with
    ``cache`` a later open of any dump that stores the same BTF bytes reads a copy instead.
    The copy is keyed by *content*: a hash of how the BTF's pages are stored in the dump
    (compressed bytes, not decompressed; see stored_digest), so a damaged or hostile dump
    can only ever find or write its own copy, never the one another dump reads. A copy is
    written (atomically) only when it parses and has the types pmdb needs, and one that no
    longer does is removed. ``head_start``: a debug vmlinux's, whose index of its own copy
    of the BTF serves when that copy is byte for byte what the dump holds. With ``cache``,
    the type names looked up are remembered for the next session (pmdb.lookup_memo)."""
    start, stop = lookup("__start_BTF"), lookup("__stop_BTF")
    if start is None or stop is None:
        raise FormatError("no __start_BTF/__stop_BTF symbols: this kernel was built without BTF")
    size = stop - start
    if not 0 < size < 1 << 30:
        raise FormatError(f"__start_BTF {start:#x} .. __stop_BTF {stop:#x} is not a plausible BTF section")
    if cache is None:
        return BtfTypes(space, offset=start, size=size, ptr_size=space.ptr_size)
    try:
        stem = _cache_stem(cache, build_id, stored_digest(space, start, size))
    except PmdbError as err:
        raise FormatError(f"cannot read the BTF: {err}") from None
    memo = LookupMemo(cache, cache.path("memo", stem.name))
    found = cache.find(stem)
    if found is not None:
        kept = _cached(found, space.ptr_size, memo)
        if kept is not None:
            return kept
        _remove(found)                    # damaged since it was written: the dump is the truth
    try:
        data = space.read(start, size)
    except PmdbError as err:
        raise FormatError(f"cannot read the BTF: {err}") from None
    index = head_start.btf_index(data) if head_start is not None else None
    btf = BtfTypes(data, ptr_size=space.ptr_size, index=index)
    btf.memo = memo
    if _has_required(btf):
        cache.store(stem, _entry(data, btf))
    else:
        btf.memo = None                 # nothing of this BTF is kept
    return btf


# A cache entry: the BTF blob, its record offsets and name offsets (what the one scan
# over ~130k records gives), sealed by a checksum (pmdb.cache.sealed). Bump the number
# when the layout changes.
_KIND = b"pmdbbt03"
_LENGTHS = struct.Struct("<QQ")


def _cache_stem(cache: Cache, build_id: str, digest: str) -> Path:
    """btf/btfidx1-BUILDID-DIGEST: the build-id (from the dump, so only a label, checked to be
    a plain word) for people reading the directory, the digest for pmdb."""
    label = build_id[:40] if build_id.isascii() and build_id.isalnum() else "unknown"
    return cache.path("btf", f"btfidx1-{label}-{digest[:32]}")


def _entry(data: bytes, btf: BtfTypes) -> list[bytes | memoryview]:
    """The entry as parts written one after another: no copy of the 5 MB is made to join them."""
    offs, names = btf.index_arrays()
    return sealed_parts(_KIND, [_LENGTHS.pack(len(data), len(offs)), data, memoryview(offs), memoryview(names)])


def _cached(path: Path, ptr_size: int, memo: LookupMemo) -> BtfTypes | None:
    """The BTF of a cache entry when it is whole (its checksum), its index fits its type
    section, and it has what pmdb needs; None otherwise."""
    try:
        payload = unsealed(_KIND, path.read_bytes())
    except OSError:
        return None
    if payload is None or len(payload) < _LENGTHS.size:
        return None
    size, count = _LENGTHS.unpack_from(payload)
    offs, names = array("I"), array("I")
    at = _LENGTHS.size + size
    if at + 2 * count * offs.itemsize != len(payload):
        return None
    offs.frombytes(payload[at:at + count * offs.itemsize])
    names.frombytes(payload[at + count * offs.itemsize:])
    try:
        btf = BtfTypes(payload[_LENGTHS.size:at], ptr_size=ptr_size, index=(offs, names))
    except PmdbError:
        return None
    btf.memo = memo
    return btf if _has_required(btf) else None


def _has_required(btf: BtfTypes) -> bool:
    """The BTF defines every REQUIRED_STRUCTS (a BTF without them is not worth keeping)."""
    try:
        return all(btf.find_type(name, "struct") is not None for name in REQUIRED_STRUCTS)
    except PmdbError:
        return False


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


@dataclass(frozen=True)
class ModuleBtf:
    """A module's split BTF, as the kernel's btf_modules list holds it."""

    name: str
    address: int          # the struct btf in the kernel
    types: BtfTypes


def _offset(t: Type, member: str) -> int:
    found = t.find_member(member)
    if found is None:
        raise FormatError(f"{t} has no member {member!r} in this kernel's BTF")
    return found[1] // 8


def module_btfs(space: AddressSpace, vmlinux: BtfTypes,
                lookup: Callable[[str], int | None]) -> list[ModuleBtf]:
    """Every loaded module's split BTF, parsed over ``vmlinux``; [] when the
    kernel keeps none (no CONFIG_DEBUG_INFO_BTF_MODULES, or no such module)."""
    head = lookup("btf_modules")
    entry_t, btf_t = vmlinux.find_type("btf_module", "struct"), vmlinux.find_type("btf", "struct")
    if head is None or entry_t is None or btf_t is None:
        return []
    off_list, off_btf = _offset(entry_t, "list"), _offset(entry_t, "btf")
    off_data, off_size, off_name = (_offset(btf_t, m) for m in ("data", "data_size", "name"))
    name_len = next((m.type.sizeof() for m in btf_t.members if m.name == "name"), 0) or 56
    out: list[ModuleBtf] = []
    seen = {head}
    node = space.ptr(head)
    while node != head:
        if node in seen or len(seen) > _MAX_MODULES:
            raise CorruptionError(node, "the btf_modules list loops or never ends")
        seen.add(node)
        btf = space.ptr(node - off_list + off_btf)
        name = space.read(btf + off_name, name_len).split(b"\0")[0].decode("utf-8", "replace")
        data, size = space.ptr(btf + off_data), space.u32(btf + off_size)
        if not 0 < size <= _MAX_BTF:
            raise CorruptionError(btf, f"module {quote(name)} has a BTF of {size} bytes")
        try:
            types = BtfTypes(space, vmlinux, offset=data, size=size)
        except FormatError as err:
            raise FormatError(f"module {quote(name)}: {err}") from None
        out.append(ModuleBtf(name, btf, types))
        node = space.ptr(node)
    return out
