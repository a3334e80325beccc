"""Program: one opened dump for Python scripts, on the same Target every dcmd reads.

``pmdb.open(path)`` returns one. Its methods are the questions dcmds answer, as
Python values: typed Objects (``prog["init_task"]``, ``prog.object(addr, type)``),
tasks, stacks, threads, the kernel log, and ``prog.run("::ps")`` for any command
line, whose rows come back as dicts rather than text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pmdb.api.objects import Object
from pmdb.api.stack import Stack, stack_of
from pmdb.config import Config
from pmdb.errors import CommandError, SymbolError
from pmdb.threads import Thread
from pmdb.types.model import Type
from pmdb.types.value import Object as _Value

if TYPE_CHECKING:
    from pmdb.api.results import Result
    from pmdb.os.linux.kernel import LinuxKernel
    from pmdb.session import Session
    from pmdb.symbols.table import Symbol
    from pmdb.target import Target


def open(path: str, *debug_files: str, config: Mapping[str, Any] | None = None,
         sysroot: str | None = None) -> Program:
    """Open a dump: a Linux vmcore (ELF, kdump, flattened, ``.zst``) or a user core.

    ``debug_files``: a kernel's debug vmlinux, or the executable and libraries of a user
    core (found by themselves when they are where the core or ``/usr/lib/debug`` says).
    ``config``: pmdb.toml options by their dotted names, e.g.
    ``{"debuginfo.directories": []}``. Raises ``pmdb.errors.FormatError`` (one line) when
    the file cannot be read. Problems that leave it usable are in ``prog.warnings``.

    >>> prog = pmdb.open("dump.202611221942")
    >>> prog["init_task"].comm
    [ "swapper/0" ]
    """
    from pmdb.opener import open_target

    cfg = Config(dict(config or {}))
    return Program(open_target(path, config=cfg, symbol_files=debug_files, sysroot=sysroot), cfg)


class Program:
    """An opened dump; see ``pmdb.open``. Use as a context manager to close it."""

    def __init__(self, target: Target, config: Config | None = None) -> None:
        self.target = target
        self.config = config or Config()
        self._session: Session | None = None

    def __repr__(self) -> str:
        return f"<pmdb.Program {self.kind} {self.target.path!r}>"

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.target.close()

    @property
    def kind(self) -> str:
        """``linux`` for a kernel dump, ``user`` for a process's core."""
        return str(getattr(self.target.os, "name", self.target.kind))

    @property
    def warnings(self) -> list[str]:
        return list(self.target.warnings)

    # -- symbols, types and objects ------------------------------------------------------

    def type(self, spelling: str) -> Type:
        """A type by its C spelling: ``struct slab``, ``task_struct *``, ``int[4]``."""
        return self.target.types.lookup(spelling)

    def symbol(self, where: str | int) -> Symbol:
        """A symbol by name, or the one containing an address."""
        if isinstance(where, str):
            sym = self.target.symbols.lookup(where)
            if sym is None:
                raise SymbolError(f"unknown symbol '{where}'")
            return sym
        hit = self.target.symbols.resolve(where)
        if hit is None:
            raise SymbolError(f"no symbol at {where:#x}")
        return hit[0]

    def object(self, address: int, type: str | Type) -> Object:
        """The value of ``type`` at ``address``: ``prog.object(addr, "struct task_struct")``."""
        t = self.type(type) if isinstance(type, str) else type
        return Object(self, _Value(self.target.memory_for(address), t, int(address)))

    def variable(self, name: str) -> Object:
        """A global variable, typed as its debug info declares it."""
        sym = self.target.symbols.lookup(name)
        if sym is None:
            raise KeyError(f"unknown symbol '{name}'")
        vtype = self.target.types.variable_type(name)
        if vtype is None:
            raise KeyError(f"no type is known for '{name}' (a kernel's debug vmlinux declares "
                           f"its globals; prog.object({sym.addr:#x}, TYPE) names one)")
        return Object(self, _Value(self.target.memory, vtype, sym.addr))

    def __getitem__(self, name: str) -> Object:
        return self.variable(name)

    def pointer_text(self, value: int) -> str:
        """A pointer as ``::print`` names it: ``sym+off`` inside a sized symbol, else hex."""
        return self.target.pointer_text(value)

    # -- threads, tasks, stacks ------------------------------------------------------------

    def threads(self) -> list[Thread]:
        """The target's threads: a core's threads (``id`` is the tid), a kernel's tasks
        (``id`` the pid, ``address`` the task_struct); ``name``, ``registers``."""
        return list(self.target.threads())

    def tasks(self) -> list[Object]:
        """Every task of a kernel dump as a ``struct task_struct`` Object, in crash's ps
        order (each CPU's idle task first)."""
        ttype = self.type("struct task_struct")
        return [Object(self, _Value(self.target.memory, ttype, t.address)) for t in self._kernel.tasks()]

    def task(self, pid: int) -> Object:
        """The task with this pid (or task_struct address)."""
        found = self._kernel.find_task(int(pid))
        return self.object(found.address, "struct task_struct")

    def stack(self, thread: Object | Thread | int | None = None) -> Stack:
        """A thread's unwound stack, innermost frame first: a task (Object, pid or
        task_struct address), a core's thread (Thread or tid); the crashed one by default."""
        return stack_of(self.target, self._thread(thread))

    def _thread(self, which: Object | Thread | int | None) -> Thread:
        if which is None:
            current = self.target.current_thread
            if current is None:
                raise CommandError("the target has no threads")
            return current
        if isinstance(which, Thread):
            return which
        if isinstance(which, Object):
            kind = which.type_.strip().kind
            return self.target.thread_by_id(int(which) if kind == "pointer" else which.address)
        return self.target.thread_by_id(int(which))

    def msgbuf(self) -> list[str]:
        """The kernel log (printk ring), one string per record, oldest first."""
        return list(self._kernel.log())

    @property
    def _kernel(self) -> LinuxKernel:
        from pmdb.os.linux.kernel import LinuxKernel

        model = self.target.os
        if not isinstance(model, LinuxKernel):
            raise CommandError(f"this needs a Linux kernel dump ({self.target.path} is a {self.kind} core)")
        return model

    # -- commands ----------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The command session ``run`` uses (variables and dot persist between runs)."""
        if self._session is None:
            from pmdb.api.results import record_session

            self._session = record_session(self.target, self.config)
        return self._session

    def run(self, line: str, *, check: bool = True) -> Result:
        """Run a pmdb command line (mdb or crash spelling) and return what it produced: one
        dict per row or record (``::ps``: pid, comm, task, ...; cells as Python values,
        addresses as ``pmdb.api.Address`` ints), and plain strings for free text.

        With ``check`` (the default), a failed command raises ``CommandError`` with its
        message; otherwise the messages are in ``result.errors``."""
        from pmdb.api.results import run_recorded

        result = run_recorded(self.session, line)
        if check and result.failed:
            raise CommandError("; ".join(result.errors) or f"{line}: failed")
        return result
