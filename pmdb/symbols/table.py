"""SymbolTable: names to addresses and addresses to ``sym+off`` by bisection.

Sources (ELF symtabs, kallsyms, kernel modules) add symbols. Symbols added one
by one are kept as they are; a bulk source (kallsyms' ~100k symbols) is added
as a ``SymbolSource`` that keeps columns and makes a ``Symbol`` only when one is
asked for, so opening a kernel dump does not pay for symbols nobody looks at.
The address order is built lazily, once, on the first address lookup after a
change.
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

# How far past an unsized function symbol (an assembler label such as _fini) an address may
# still be named after it; beyond this it is more likely data that merely follows the label.
UNSIZED_REACH = 0x100


@dataclass(frozen=True)
class Symbol:
    """A named address: a function, an object or other, with its size and module."""

    name: str
    addr: int
    size: int = 0
    kind: str = "func"       # func, object, other
    module: str | None = None  # library or kernel module basename; None for the main object
    binding: str = "global"    # global, local, weak
    letter: str = ""           # the nm-style type letter kallsyms keeps ("T", "t", "D", ...)
    # from a separate debug file: names an address only where the object's own symbols do
    # not (gdb looks at a stripped library's .dynsym before its debug file's .symtab)
    secondary: bool = False

    def contains(self, addr: int) -> bool:
        return self.addr <= addr < self.addr + max(self.size, 1)


class SymbolSource(Protocol):
    """A bulk batch of symbols kept as columns; index i is its i-th symbol."""

    def __len__(self) -> int: ...

    def addresses(self) -> Sequence[int]: ...

    def sizes(self) -> Sequence[int]: ...

    def symbol(self, i: int) -> Symbol: ...

    def all_names(self) -> Sequence[str]: ...

    def all_symbols(self) -> Sequence[Symbol]: ...

    def indices_named(self, name: str) -> list[int]: ...


class SymbolTable:
    def __init__(self, *, first_alias: bool = False) -> None:
        # first_alias: of two symbols at one address, name it after the one added first, as
        # the kernel does (kallsyms keeps aliases in a fixed order and get_symbol_pos() takes
        # the first: /proc/PID/stack and oops traces say __do_sys_pause, not its alias
        # __x64_sys_pause); otherwise choose as gdb does for user programs (_prefer)
        self.first_alias = first_alias
        # rename(symbol, addr): the name DWARF (a library's debug file) gives the function of
        # addr that symbol starts, or None: gdb names frames by DWARF first (read() is
        # __GI___libc_read, an alias; a GCC clone foo.constprop.0 is foo, a name no symbol has)
        self.rename: Callable[[Symbol, int], str | None] | None = None
        # global index -> Symbol; None for a source's symbol not made yet
        self._syms: list[Symbol | None] = []
        self._by_name: dict[str, list[int]] = {}          # symbols added one by one
        self._sources: list[tuple[int, SymbolSource]] = []  # (first global index, source)
        self._order: list[int] = []        # global indices in (addr, -size) order
        self._addrs: list[int] = []        # their addresses, for bisection
        self._dirty = False

    def add(self, symbols: Iterable[Symbol]) -> None:
        syms = self._syms
        by_name = self._by_name
        for sym in symbols:
            by_name.setdefault(sym.name, []).append(len(syms))
            syms.append(sym)
        self._dirty = True

    def add_source(self, source: SymbolSource) -> None:
        """Add a bulk source without making its symbols (see the module docstring)."""
        self._sources.append((len(self._syms), source))
        self._syms.extend([None] * len(source))
        self._dirty = True

    def close(self) -> None:
        """Let each bulk source that keeps something for later (kallsyms' lookups) keep it."""
        for _, source in self._sources:
            closer = getattr(source, "close", None)
            if closer is not None:
                closer()

    def __len__(self) -> int:
        return len(self._syms)

    def __iter__(self) -> Iterator[Symbol]:
        self._sort()
        self._make_all()
        return map(self._syms.__getitem__, self._order)  # type: ignore[arg-type]

    def names(self) -> Iterable[str]:
        """Every distinct name, in the order first added."""
        if not self._sources:
            return self._by_name.keys()
        return dict.fromkeys(name for _, name in self._named()).keys()

    def lookup(self, name: str, module: str | None = None) -> Symbol | None:
        """The symbol called name (in module, when given): globals first, then functions."""
        cands = [self._symbol(i) for i in self._indices_named(name)]
        if not cands:
            return None
        if module is not None:
            cands = [s for s in cands if _module_matches(s.module, module)]
            if not cands:
                return None

        def rank(s: Symbol) -> tuple[int, int, int]:
            return (s.module is not None, s.binding != "global", s.kind != "func" and s.kind != "object")

        return min(cands, key=rank)

    def named(self, name: str) -> list[Symbol]:
        """Every symbol called name (kernels have several static functions of one name)."""
        return [self._symbol(i) for i in self._indices_named(name)]

    def adjacent(self, sym: Symbol, step: int) -> Symbol | None:
        """The symbol before (step -1) or after (step 1) sym in address order, skipping those
        at sym's own address; None at either end."""
        self._sort()
        i = bisect.bisect_left(self._addrs, sym.addr) if step < 0 else bisect.bisect_right(self._addrs, sym.addr)
        i += -1 if step < 0 else 0
        if not 0 <= i < len(self._order):
            return None
        return self._symbol(self._order[i])

    def below(self, addr: int) -> Symbol | None:
        """The last symbol at or below addr, whatever its size (crash names a module's
        addresses after the nearest symbol below them)."""
        self._sort()
        i = bisect.bisect_right(self._addrs, addr) - 1
        return self._symbol(self._order[i]) if i >= 0 else None

    def search(self, pattern: str) -> list[Symbol]:
        """Symbols whose name matches a glob pattern, in address order."""
        self._sort()
        match = re.compile(fnmatch.translate(pattern)).match
        hits = {i for i, name in self._named() if match(name)}
        return [self._symbol(i) for i in self._order if i in hits]

    def resolve(self, addr: int) -> tuple[Symbol, int] | None:
        """The symbol containing addr (or the nearest below it if it has no size)."""
        self._sort()
        i = bisect.bisect_right(self._addrs, addr) - 1
        best: Symbol | None = None
        # several symbols may share an address or nest: prefer one that contains addr
        j = i
        top = self._addrs[i] if i >= 0 else 0
        # every alias at the highest address (libc has a dozen at one), a few below it
        while j >= 0 and (j > i - 8 or self._addrs[j] == top):
            s = self._symbol(self._order[j])
            if s.contains(addr):
                if best is None or _prefer(s, best, self.first_alias):
                    best = s
            elif best is None and s.size == 0 and s.kind == "func" and addr - s.addr < UNSIZED_REACH:
                best = s
            if self._addrs[j] != self._addrs[i] and best is not None:
                break
            j -= 1
        if best is None:
            return None
        if self.rename is not None:
            best = self._dwarf_alias(best, addr)
        return best, addr - best.addr

    def _dwarf_alias(self, best: Symbol, addr: int) -> Symbol:
        """best renamed as DWARF names its function (see ``rename``): its alias of that name,
        else best under that name."""
        assert self.rename is not None
        # DWARF can only differ from a lone symbol's name for a GCC clone (foo.constprop.0):
        # others are not looked up (a unit's DIEs cost tens of ms to parse)
        lone = bisect.bisect_right(self._addrs, best.addr) - bisect.bisect_left(self._addrs, best.addr) == 1
        if lone and "." not in best.name:
            return best
        name = self.rename(best, addr)
        if name is None or name == best.name:
            return best
        for sym in self.named(name):
            if sym.addr == best.addr and sym.module == best.module:
                return sym
        return dataclasses.replace(best, name=name)

    def describe(self, addr: int, *, call_site: bool = False) -> str:
        """``sym+0x10`` (with ``lib`` prefix for a shared object), or the hex address.

        call_site: addr is a return address, named after the byte before it (the call),
        so a call to a noreturn function at a function's end names that function, not the
        next; the offset stays addr's own, as gdb and mdb print it."""
        hit = self.resolve(addr - 1 if call_site and addr else addr)
        if hit is None:
            return f"{addr:#x}"
        sym, off = hit[0], addr - hit[0].addr
        name = f"{sym.module}`{sym.name}" if sym.module else sym.name
        return f"{name}+{off:#x}" if off else name

    # -- storage ---------------------------------------------------------------------

    def _symbol(self, i: int) -> Symbol:
        sym = self._syms[i]
        if sym is None:
            first, source = self._source_of(i)
            sym = self._syms[i] = source.symbol(i - first)
        return sym

    def _source_of(self, i: int) -> tuple[int, SymbolSource]:
        k = bisect.bisect_right(self._sources, i, key=lambda fs: fs[0]) - 1
        return self._sources[k]

    def _make_all(self) -> None:
        """Make every source's Symbols, in bulk (cheaper than one at a time)."""
        for first, source in self._sources:
            stop = first + len(source)
            if None in self._syms[first:stop]:
                made = source.all_symbols()
                self._syms[first:stop] = [old if old is not None else new
                                          for old, new in zip(self._syms[first:stop], made, strict=True)]

    def _named(self) -> Iterator[tuple[int, str]]:
        """(global index, name) of every symbol, in the order added."""
        done = 0
        for first, source in [*self._sources, (len(self._syms), None)]:
            for i in range(done, first):
                sym = self._syms[i]
                assert sym is not None  # added one by one
                yield i, sym.name
            if source is not None:
                yield from enumerate(source.all_names(), first)
                done = first + len(source)

    def _indices_named(self, name: str) -> list[int]:
        """Global indices of the symbols called name, in the order they were added."""
        found = list(self._by_name.get(name, ()))
        for first, source in self._sources:
            found += [first + i for i in source.indices_named(name)]
        if len(found) > 1:
            found.sort()
        return found

    def _sort(self) -> None:
        if not self._dirty:
            return
        addrs: list[int] = []
        sizes: list[int] = []
        done = 0
        for first, source in [*self._sources, (len(self._syms), None)]:
            own = self._syms[done:first]
            addrs += [s.addr for s in own if s is not None]
            sizes += [s.size for s in own if s is not None]
            if source is not None:
                addrs += source.addresses()
                sizes += source.sizes()
                done = first + len(source)
        # one integer key orders by address, then larger first (sizes are below 2**64)
        keys = [(a << 64) - s for a, s in zip(addrs, sizes, strict=True)]
        self._order = sorted(range(len(keys)), key=keys.__getitem__)
        self._addrs = [addrs[i] for i in self._order]
        self._dirty = False


def _prefer(a: Symbol, b: Symbol, first_alias: bool) -> bool:
    """Whether ``a`` (met before ``b`` in the table's order when at one address) names an
    address that both contain better than ``b``."""
    if (a.kind == "func") != (b.kind == "func"):
        return a.kind == "func"
    if first_alias:
        if (a.addr, a.size) == (b.addr, b.size):
            return True
        if (a.binding == "global") != (b.binding == "global"):
            return a.binding == "global"
        return a.size < b.size
    # gdb's minimal symbols: the object's own before its debug file's, then, of aliases, the
    # last in strcmp order (gdb sorts equal addresses by name and takes the last): read, not
    # __read; clone3, not __GI___clone3
    if a.addr != b.addr:
        return a.addr > b.addr
    if a.secondary != b.secondary:
        return b.secondary
    return a.name.encode() > b.name.encode()


def _module_matches(module: str | None, wanted: str) -> bool:
    if module is None:
        return wanted in ("", "a.out")
    return module == wanted or module.startswith(wanted + ".") or module.split(".so")[0] == wanted
