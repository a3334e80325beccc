"""A memory overlay: a real dump's bytes with some of them changed, copy-on-write.

In-dump structures (task lists, slab freelists, the printk ring, BTF, kallsyms)
are fuzzed by damaging the memory of a real fixture dump rather than by building
synthetic blobs: the overlay wraps any AddressSpace (the physical one under the
page tables, or the kernel's virtual one) and patches its reads; the dump file is
never written. The chunks it hands out read back through it, so a layer above that
reads through ``mapping()`` sees the patches too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pmdb.memory.space import AddressSpace, Chunk
from pmdb.target import Target


class Overlay(AddressSpace):
    """``inner`` with ``patches`` ({address: bytes}) applied to every read."""

    def __init__(self, inner: AddressSpace, patches: Mapping[int, bytes] | None = None) -> None:
        super().__init__(inner.byteorder, inner.ptr_size)
        self.inner = inner
        self.patches: dict[int, bytes] = dict(patches or {})

    def mapping(self, addr: int, n: int) -> list[Chunk]:
        self.inner.mapping(addr, n)          # the same holes fault
        return [Chunk(addr, n, self, addr)]

    def read_at(self, offset: int, n: int) -> bytes:
        return self.read(offset, n)

    def read(self, addr: int, n: int) -> bytes:
        data = self.inner.read(addr, n)
        hits = [(at, raw) for at, raw in self.patches.items() if at < addr + n and at + len(raw) > addr]
        if not hits:
            return data
        out = bytearray(data)
        for at, raw in hits:
            lo, hi = max(at, addr), min(at + len(raw), addr + n)
            out[lo - addr:hi - addr] = raw[lo - at:hi - at]
        return bytes(out)

    def __getattr__(self, name: str) -> Any:
        # what a concrete space adds (a page-table root, the physical space below)
        return getattr(self.inner, name)


def words(values: Mapping[int, int], size: int = 8, byteorder: str = "little") -> dict[int, bytes]:
    """{address: integer} as {address: bytes} patches of ``size`` bytes each."""
    return {at: (v & ((1 << 8 * size) - 1)).to_bytes(size, byteorder)  # type: ignore[arg-type]
            for at, v in values.items()}


def patched_kernel(base: Target, patches: Mapping[int, bytes]) -> Target:
    """A fresh kernel target over ``base``'s dump whose virtual memory carries ``patches``:
    a new kernel model (no cached tasks, log or slab caches), the same symbols and types."""
    from pmdb.os.linux.kernel import LinuxKernel

    kernel = base.os
    assert isinstance(kernel, LinuxKernel), "patched_kernel needs a kernel target"
    space = Overlay(kernel.mem, patches)
    km = dataclasses.replace(kernel.km, space=space)
    damaged = LinuxKernel(kernel.dump, km, kernel.types, path=kernel.path)
    return Target(path=base.path, arch=base.arch, memory=space, symbols=base.symbols,
                  types=base.types, os=damaged, kind="vmcore")


def open_physically_patched(path: str, patches: Mapping[int, bytes], cache: Any) -> Target:
    """A kernel dump opened with ``patches`` applied to its *physical* memory, below the page
    tables: everything read at open (kallsyms, BTF, ORC) sees them, as if the file held them."""
    from pmdb.dumps.detect import open_dump
    from pmdb.opener import _open_vmcore

    dump = open_dump(path, cache)
    damaged = Overlay(dump.space(), patches)
    dump.space = lambda: damaged            # type: ignore[method-assign]
    return _open_vmcore(dump, path, cache)
