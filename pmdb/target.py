"""Target: what the user debugs, seen the same way by every dcmd.

A Target bundles an architecture, a virtual address space, symbols, types and
an OS model (which knows threads, stacks and status). DumpTarget is opened
from a file; EmulatedTarget (pmdb.emulate) wraps an emulator's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pmdb.arch import Arch
from pmdb.errors import CommandError
from pmdb.memory.space import AddressSpace
from pmdb.symbols.table import SymbolTable
from pmdb.threads import Mapping, Thread
from pmdb.types.registry import TypeRegistry
from pmdb.unwind.frame import Frame


class OSModel(Protocol):
    """What an operating-system model (user process, Linux kernel) provides."""

    name: str

    def threads(self) -> Sequence[Thread]: ...

    def stack(self, thread: Thread) -> list[Frame]: ...

    def status(self) -> list[tuple[str, str]]: ...

    def mappings(self) -> Sequence[Mapping]: ...


class Target:
    """A debuggable thing; see the module docstring."""

    def __init__(self, *, path: str, arch: Arch, memory: AddressSpace, symbols: SymbolTable,
                 types: TypeRegistry, os: OSModel, kind: str) -> None:
        self.path = path
        self.arch = arch
        self.memory = memory
        self.symbols = symbols
        self.types = types
        self.os = os
        self.kind = kind
        self.warnings: list[str] = []  # problems at open that left it usable, printed once
        self._current: Thread | None = None
        self._current_chosen = False       # the first thread, found when first asked for


    def memory_for(self, addr: int) -> AddressSpace:
        """The space an address the user typed is read from: the target's, unless it cannot
        map ``addr`` and the current task's user space can. crash (after ``set PID``) and
        mdb (after ``::context``) read user addresses in the current task's context; the
        OS model says what that space is (``context_space``; a user core has none)."""
        if self.memory.readable(addr):
            return self.memory
        context = getattr(self.os, "context_space", None)     # only a kernel model has one
        thread = self.current_thread
        space = context(thread) if context is not None and thread is not None else None
        return space if space is not None and space.readable(addr) else self.memory

    # -- threads ---------------------------------------------------------------

    def threads(self) -> Sequence[Thread]:
        return self.os.threads()

    @property
    def current_thread(self) -> Thread | None:
        """The thread commands default to: the first one (a kernel's panic task) until
        ``set_current_thread``; looked up on first use, so opening a dump walks no task list."""
        if not self._current_chosen:
            threads = self.os.threads()
            self._current = threads[0] if threads else None
            self._current_chosen = True
        return self._current

    def choose_current(self, thread: Thread) -> None:
        """Make ``thread`` current without looking it up in the thread list (the opener's
        panic task: finding it in a list of 10,000 tasks would read them all)."""
        self._current, self._current_chosen = thread, True

    def set_current_thread(self, ident: int) -> Thread:
        """Make a thread current by its id (tid/pid), address or 1-based index."""
        for t in self.threads():
            if ident in (t.id, t.address):
                self._current, self._current_chosen = t, True
                return t
        for t in self.threads():
            if t.index == ident:
                self._current, self._current_chosen = t, True
                return t
        raise CommandError(f"no thread {ident:#x} ({ident})")

    def thread_by_id(self, ident: int) -> Thread:
        """A thread by id (tid/pid) or address first, then by 1-based index: on a kernel
        ``0t1`` is pid 1, not the first task in the list."""
        for t in self.threads():
            if ident in (t.id, t.address):
                return t
        for t in self.threads():
            if t.index == ident:
                return t
        raise CommandError(f"no thread {ident:#x} ({ident})")

    def registers(self, thread: Thread | None = None) -> dict[str, int]:
        t = thread or self.current_thread
        if t is None:
            raise CommandError("the target has no threads")
        return t.registers

    def stack(self, thread: Thread | None = None) -> list[Frame]:
        t = thread or self.current_thread
        if t is None:
            raise CommandError("the target has no threads")
        return self.os.stack(t)

    # -- addresses ---------------------------------------------------------------

    def describe(self, addr: int, *, call_site: bool = False) -> str:
        return self.symbols.describe(addr, call_site=call_site)

    def pointer_text(self, value: int) -> str:
        """A pointer as ``::print`` names it: ``sym+off`` only when a sized symbol contains it
        (or it is a symbol's start), since the nearest unsized symbol below (``_fini+0xb8c``)
        would mislead; hex otherwise."""
        hit = self.symbols.resolve(value)
        if hit is not None:
            sym, off = hit
            if off == 0 or (sym.size and sym.contains(value)):
                return self.describe(value)
        return f"{value:#x}"

    def close(self) -> None:
        self.types.close()          # before the dump: a type source may keep what it learnt
        self.symbols.close()        # and so may a symbol source
        closer = getattr(self.os, "close", None)
        if closer:
            closer()
