"""SymbolTable: names to addresses and addresses to ``sym+off`` by bisection.

Sources (ELF symtabs, kallsyms, kernel modules) add symbols; the table sorts
lazily, once, on the first address lookup after a change.
"""

from __future__ import annotations

import bisect
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# How far past an unsized function symbol (an assembler label such as _fini) an address may
# still be named after it; beyond this it is more likely data that merely follows the label.
UNSIZED_REACH = 0x100


@dataclass(frozen=True)
class Symbol:
    name: str
    addr: int
    size: int = 0
    kind: str = "func"       # func, object, other
    module: str | None = None  # library or kernel module basename; None for the main object
    binding: str = "global"    # global, local, weak

    def contains(self, addr: int) -> bool:
        return self.addr <= addr < self.addr + max(self.size, 1)


class SymbolTable:
    def __init__(self) -> None:
        self._by_name: dict[str, list[Symbol]] = {}
        self._sorted: list[Symbol] = []
        self._addrs: list[int] = []
        self._dirty = False

    def add(self, symbols: Iterable[Symbol]) -> None:
        for sym in symbols:
            self._by_name.setdefault(sym.name, []).append(sym)
            self._sorted.append(sym)
        self._dirty = True

    def __len__(self) -> int:
        return len(self._sorted)

    def __iter__(self) -> Iterator[Symbol]:
        self._sort()
        return iter(self._sorted)

    def names(self) -> Iterable[str]:
        return self._by_name.keys()

    def lookup(self, name: str, module: str | None = None) -> Symbol | None:
        """The symbol called name (in module, when given): globals first, then functions."""
        cands = self._by_name.get(name)
        if not cands:
            return None
        if module is not None:
            cands = [s for s in cands if _module_matches(s.module, module)]
            if not cands:
                return None

        def rank(s: Symbol) -> tuple[int, int, int]:
            return (s.module is not None, s.binding != "global", s.kind != "func" and s.kind != "object")

        return min(cands, key=rank)

    def search(self, pattern: str) -> list[Symbol]:
        """Symbols whose name matches a glob pattern, in address order."""
        self._sort()
        return [s for s in self._sorted if fnmatch.fnmatchcase(s.name, pattern)]

    def resolve(self, addr: int) -> tuple[Symbol, int] | None:
        """The symbol containing addr (or the nearest below it if it has no size)."""
        self._sort()
        i = bisect.bisect_right(self._addrs, addr) - 1
        best: Symbol | None = None
        # several symbols may share an address or nest: prefer one that contains addr
        j = i
        while j >= 0 and j > i - 8:
            s = self._sorted[j]
            if s.contains(addr):
                if best is None or _prefer(s, best):
                    best = s
            elif best is None and s.size == 0 and s.kind == "func" and addr - s.addr < UNSIZED_REACH:
                best = s
            if self._addrs[j] != self._addrs[i] and best is not None:
                break
            j -= 1
        if best is None:
            return None
        return best, addr - best.addr

    def describe(self, addr: int) -> str:
        """``sym+0x10`` (with ``lib`` prefix for a shared object), or the hex address."""
        hit = self.resolve(addr)
        if hit is None:
            return f"{addr:#x}"
        sym, off = hit
        name = f"{sym.module}`{sym.name}" if sym.module else sym.name
        return f"{name}+{off:#x}" if off else name

    def _sort(self) -> None:
        if self._dirty:
            self._sorted.sort(key=lambda s: (s.addr, -s.size))
            self._addrs = [s.addr for s in self._sorted]
            self._dirty = False


def _prefer(a: Symbol, b: Symbol) -> bool:
    """Which of two symbols containing an address names it better."""
    if (a.kind == "func") != (b.kind == "func"):
        return a.kind == "func"
    if (a.binding == "global") != (b.binding == "global"):
        return a.binding == "global"
    return a.size < b.size


def _module_matches(module: str | None, wanted: str) -> bool:
    if module is None:
        return wanted in ("", "a.out")
    return module == wanted or module.startswith(wanted + ".") or module.split(".so")[0] == wanted
