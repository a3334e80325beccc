"""Context: what one dcmd call knows (mdb's flags, as attributes), and its only door into the session.

dcmds and walkers never reach the session itself: what they may do to it (read
the registry and configuration, evaluate a word, switch the target, move dot,
walk, keep per-session state, run a line) is a method here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pmdb.commands.args import number
from pmdb.errors import CommandError, ParseError
from pmdb.language.evaluate import evaluate
from pmdb.language.parser import parse_expr
from pmdb.progress import Progress

if TYPE_CHECKING:
    from pmdb.commands.registry import Registry
    from pmdb.config import Config
    from pmdb.os.linux.kernel import LinuxKernel
    from pmdb.os.user.process import UserProcess
    from pmdb.output import Output
    from pmdb.session import Session
    from pmdb.target import Target
    from pmdb.types.model import Type

T = TypeVar("T")


_M = TypeVar("_M")


@dataclass
class Handoff:
    """An address handed to the next pipe stage, with its type when known."""

    addr: int
    type: Type | None = None


@dataclass
class Context:
    """What a running dcmd is given: its session, output, address, count and flags."""

    session: Session
    out: Output
    addr: int | None = None          # None when the dcmd was called without an address
    count: int = 1
    count_given: bool = False
    in_loop: bool = False            # called once per address of a pipe or walk
    first: bool = True               # the first call of such a loop
    piped: bool = False              # output goes to another dcmd: hand on addresses
    type: Type | None = None         # the type carried with addr from the previous stage
    argv: Sequence[Any] = ()
    handoffs: list[Handoff] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # shared by every call of one pipe stage

    @property
    def target(self) -> Target:
        t = self.session.target
        if t is None:
            raise CommandError("no target is open: this command needs a dump (pmdb DUMP)")
        return t

    @property
    def kernel(self) -> LinuxKernel:
        """The target's Linux kernel model; one clear error when the target is not a kernel."""
        from pmdb.os.linux.kernel import LinuxKernel

        return _os_as(self.target, LinuxKernel, "a Linux kernel dump")

    @property
    def process(self) -> UserProcess:
        """The target's user-process model; one clear error when the target is not a user core."""
        from pmdb.os.user.process import UserProcess

        return _os_as(self.target, UserProcess, "a user core")

    @property
    def is_kernel(self) -> bool:
        """Whether the target is a Linux kernel dump (for dcmds that serve both kinds)."""
        from pmdb.os.linux.kernel import LinuxKernel

        return isinstance(self.target.os, LinuxKernel)

    @property
    def addressed(self) -> bool:
        return self.addr is not None

    @property
    def dot(self) -> int:
        return self.session.dot

    def emit(self, addr: int, type: Type | None = None) -> None:
        """Hand addr on to the next stage of the pipeline (at most limits.max_items of them)."""
        self.handoffs.append(Handoff(addr, type))
        if len(self.handoffs) & 0xFFF == 0:        # checked now and then: emit is hot
            self.session.check_items(len(self.handoffs))

    def require_addr(self) -> int:
        if self.addr is None:
            raise CommandError("this dcmd needs an address")
        return self.addr

    # -- the session, seen through this call (pmdb.session never reaches dcmds otherwise) ------

    @property
    def registry(self) -> Registry:
        return self.session.registry

    @property
    def config(self) -> Config:
        return self.session.config

    @property
    def has_target(self) -> bool:
        return self.session.target is not None

    def set_target(self, target: Target) -> None:
        """Make target the current one (::emulate -s, ::target)."""
        self.session.target = target

    def set_dot(self, addr: int) -> None:
        self.session.dot = addr

    @property
    def radix(self) -> int:
        """The default radix ($d): how numbers without a prefix read and ``%r`` prints."""
        return self.session.radix

    def set_radix(self, radix: int) -> None:
        self.session.radix = radix

    def value(self, word: int | str, *, radix: int = 16, crash: bool = False,
              what: str = "expression") -> int:
        """An int as it is; a word as a number (pmdb.commands.args.number, with its radix and
        crash variant), else as an mdb expression (symbols, registers, memory, operators).
        ``what`` names the word in the error, e.g. "bad address 'x+': ..."."""
        if isinstance(word, int):
            return word
        text = str(word)
        literal = number(text, radix=radix, crash=crash)
        if literal is not None:
            return literal
        try:
            expr = parse_expr(text, self.session.radix)
        except ParseError as err:
            raise CommandError(f"bad {what} '{text}': {err.message}") from None
        return evaluate(expr, self.session)

    def walk(self, name: str, start: int | None = None, args: Sequence[Any] = ()) -> Iterator[Handoff]:
        """What a walker yields from start (None: its default), typed when the walker says."""
        spec = self.registry.walker(name)
        typ = self.target.types.find(spec.type_name) if spec.type_name and self.has_target else None
        sub = dataclasses.replace(self, addr=start, argv=tuple(args), handoffs=[])
        return (Handoff(addr, typ) for addr in spec.func(sub, start))

    def store(self, key: str, factory: Callable[[], T]) -> T:
        """Per-session state of an extension (made by factory on first use): what a dcmd
        module keeps between calls, such as ::emulate's breakpoints."""
        kept = self.session.extensions
        if key not in kept:
            kept[key] = factory()
        return cast(T, kept[key])

    def invoke(self, name: str, args: Sequence[Any] = ()) -> None:
        """Run another dcmd in this call's place (mdb's addr$<macro)."""
        self.session.invoke(self.registry.dcmd(name), self, args)

    def run_line(self, text: str) -> bool:
        """Run a command line into this call's output; a bare newline still repeats the
        line that ran this one. False when it failed (already reported)."""
        return self.session.run_line(text, out=self.out.stream, remember=False)

    def run_script(self, lines: Iterable[str]) -> bool:
        return self.session.run_script(lines)

    def progress(self, description: str, total: int = 0) -> AbstractContextManager[Progress]:
        """A progress bar for a long loop (``with ctx.progress("::kmalog", n) as bar:
        ... bar.advance(1)``): shown on a terminal once the work has run for a second,
        never inside another bar, gone when the loop ends or ^C stops it."""
        return self.session.progress(description, total)

    def progressing(self, description: str, items: Iterable[T], total: int | None = None) -> Iterator[T]:
        """items, with a progress bar (see ``progress``) advanced by each one: ``for task in
        ctx.progressing("::stacks", tasks):``. The total is ``len(items)`` when it has one."""
        count = total if total is not None else len(items) if isinstance(items, Sized) else 0
        with self.progress(description, count) as bar:
            for item in items:
                yield item
                bar.advance(1)


def _os_as(target: Target, cls: type[_M], needed: str) -> _M:
    """The target's OS model as cls, or the error that names what the dcmd needs."""
    os_model: object = target.os
    if not isinstance(os_model, cls):
        raise CommandError(f"this dcmd needs {needed} (the target is {_what(os_model)})")
    return os_model


def _what(os_model: object) -> str:
    """A target's kind in words, for the error of a dcmd that needs another kind."""
    name = getattr(os_model, "name", "")
    return {"linux": "a Linux kernel dump", "user": "a user core"}.get(str(name), f"a {name or 'target'} target")
