"""The kernel pieces a dcmd needs, found on any kernel Target.

Log, address and page-table dcmds need only VMCOREINFO, the kernel space
and the symbols, not the whole OS model; looking the pieces up by type
(rather than by the model's attribute names) keeps those dcmds working on
any target that carries them, including a half-opened one whose BTF failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pmdb.dumps.vmcoreinfo import VmcoreInfo
from pmdb.memory.x86_64 import KernelSpace
from pmdb.os.linux.kernel_memory import KernelMemory
from pmdb.symbols.kmodules import KernelModule
from pmdb.symbols.table import SymbolTable

T = TypeVar("T")


@dataclass
class KernelParts:
    space: KernelSpace
    info: VmcoreInfo
    symbols: SymbolTable
    modules: Sequence[KernelModule] = ()

    def lookup(self, name: str) -> int | None:
        sym = self.symbols.lookup(name)
        return sym.addr if sym is not None and sym.module is None else None


def _find(obj: Any, cls: type[T]) -> T | None:
    if isinstance(obj, cls):
        return obj
    for value in getattr(obj, "__dict__", {}).values():
        if isinstance(value, cls):
            return value
    return None


def kernel_parts(owner: Any) -> KernelParts | None:
    """The kernel pieces of a Target or of its OS model, or None when it is not a kernel dump."""
    os_model = getattr(owner, "os", owner)
    km = _find(os_model, KernelMemory)
    if km is not None:
        return KernelParts(km.space, km.info, km.symbols, km.modules)
    info = _find(os_model, VmcoreInfo)
    memory = getattr(owner, "memory", None)
    space = memory if isinstance(memory, KernelSpace) else _find(os_model, KernelSpace)
    symbols = getattr(owner, "symbols", None)
    if info is None or space is None or not isinstance(symbols, SymbolTable):
        return None
    modules = getattr(os_model, "modules", ())
    return KernelParts(space, info, symbols, modules if isinstance(modules, Sequence) else ())
